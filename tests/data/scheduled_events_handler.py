"""A maintenance handler written as Microsoft's scheduled-events docs write it: poll, approve, wait.

Only the address is a parameter (the docs hard-code http://169.254.169.254). It prints one line per
document it sees and exits once the event it approved is gone.
"""

import json
import sys
import time
import urllib.request

base = sys.argv[1] if len(sys.argv) > 1 else "http://169.254.169.254"
metadata_url = base + "/metadata/scheduledevents?api-version=2020-07-01"


def get_scheduled_events():
    req = urllib.request.Request(metadata_url)
    req.add_header("Metadata", "true")
    resp = urllib.request.urlopen(req)
    return json.loads(resp.read())


def confirm_scheduled_event(event_id):
    payload = json.dumps({"StartRequests": [{"EventId": event_id}]}).encode()
    req = urllib.request.Request(metadata_url, data=payload, method="POST")
    req.add_header("Metadata", "true")
    req.add_header("Content-Type", "application/json")
    return urllib.request.urlopen(req).getcode()


def main():
    approved = None
    last_incarnation = None
    while True:
        payload = get_scheduled_events()
        if payload["DocumentIncarnation"] != last_incarnation:
            last_incarnation = payload["DocumentIncarnation"]
            print(json.dumps(payload), flush=True)
        for event in payload["Events"]:
            if event["EventStatus"] == "Scheduled" and approved is None:
                # ... drain work, save state ...
                print("approve", event["EventId"], confirm_scheduled_event(event["EventId"]), flush=True)
                approved = event["EventId"]
        if approved and not any(e["EventId"] == approved for e in payload["Events"]):
            print("done", flush=True)
            return
        time.sleep(1)  # the docs poll once a second


if __name__ == "__main__":
    main()
