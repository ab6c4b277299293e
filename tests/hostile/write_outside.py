import pathlib


def srmodel():
    errors = []
    for path in ("{outside}", "{own}"):
        try:
            pathlib.Path(path).write_text("{marker}")
        except OSError as e:
            errors.append(f"{e.strerror}")
    raise RuntimeError(f"write failed: {errors}")
