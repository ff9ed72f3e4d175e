"""An application that configures itself from its VM's tags, as the seed blog post's script does."""

import json
import os
import urllib.request


def imds_base() -> str:
    return os.environ.get("AZIMDS_ENDPOINT", "http://169.254.169.254")


def tag(name: str) -> str | None:
    """The value of one of this VM's tags, or None."""
    request = urllib.request.Request(imds_base() + "/metadata/instance/compute?api-version=2021-02-01",
                                     headers={"Metadata": "true"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # IMDS is never behind a proxy
    with opener.open(request, timeout=5) as response:
        compute = json.load(response)
    return {t["name"]: t["value"] for t in compute["tagsList"]}.get(name)
