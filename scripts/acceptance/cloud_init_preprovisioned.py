"""Acceptance: cloud-init's own Azure IMDS code against the emulator, for a pre-provisioned VM.

Run inside ``azimds run`` (so 169.254.169.254 is the emulator, as cloud-init hard-codes it), with a cloud-init
source tree on PYTHONPATH (canonical/cloud-init; it is not on PyPI) and its requirements installed::

    azimds run --profile scripts/acceptance/pooled.yaml -- env PYTHONPATH=CLOUD_INIT_SRC \\
        VENV/bin/python scripts/acceptance/cloud_init_preprovisioned.py

It reads the instance document as cloud-init does (``fetch_metadata_with_api_fallback``), checks the VM is in a
pool (``ppsType``), starts cloud-init's ``fetch_reprovision_data`` (which polls until it gets data), hands the VM
over through the control plane after a few seconds, parses the answer with cloud-init's ``read_azure_ovf``, and
checks ``ppsType`` reads ``None`` afterwards, as cloud-init then requires. Prints one line per step; exits 0 on
success.
"""

import json
import os
import subprocess
import sys
import threading
import time

from cloudinit.sources import DataSourceAzure as azure_ds
from cloudinit.sources.azure import imds


def main() -> int:
    before = imds.fetch_metadata_with_api_fallback(retry_deadline=time.monotonic() + 30)
    pps = before["extended"]["compute"]["ppsType"]
    print(f"instance read by cloud-init: vm {before['compute']['name']}, ppsType {pps}")
    assert pps == "Running", pps

    def hand_over() -> None:
        time.sleep(3)
        patch = {"compute": {"osProfile": {"computerName": "customer-vm"}}}
        subprocess.run(
            [sys.executable, "-m", "azimds", "ctl", "reprovision", json.dumps(patch)],
            check=True,
            stdout=subprocess.DEVNULL,
            env=os.environ,
        )
        print("handed over through the control plane")

    threading.Thread(target=hand_over, daemon=True).start()
    began = time.monotonic()
    contents = imds.fetch_reprovision_data()
    print(f"cloud-init's fetch_reprovision_data returned {len(contents)} bytes after {time.monotonic() - began:.1f} s")
    metadata, userdata, cfg = azure_ds.read_azure_ovf(contents)
    print(
        f"read_azure_ovf: local-hostname {metadata['local-hostname']}, user "
        f"{cfg['system_info']['default_user']['name']}, userdata {len(userdata)} bytes"
    )
    assert metadata["local-hostname"] == "customer-vm"
    after = imds.fetch_metadata_with_api_fallback(retry_deadline=time.monotonic() + 30)
    pps_after = azure_ds.DataSourceAzure._ppstype_from_imds(None, after)  # type: ignore[arg-type]
    print(f"ppsType after: {pps_after}")
    assert pps_after in (None, azure_ds.PPSType.NONE.value)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
