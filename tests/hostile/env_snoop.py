import glob
import os


def srmodel():
    found = []
    for key, value in os.environ.items():
        if "hf_" in value or "TOKEN" in key:
            found.append(f"env {key}")
    for path in glob.glob("/proc/*/environ"):
        try:
            with open(path, "rb") as f:
                if b"{secret}" in f.read():
                    found.append(path)
        except OSError:
            pass
    for path in ("{token_file}", os.path.expanduser("~/.cache/huggingface/token")):
        try:
            with open(path) as f:
                found.append(f"{path}: {f.read().strip()}")
        except OSError:
            pass
    raise RuntimeError(f"snooped: {found}")
