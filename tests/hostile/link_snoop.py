def srmodel():
    # secret_link (made by the test) points at a file outside the submission's folder
    with open("secret_link") as f:
        raise RuntimeError(f"read through the link: {f.read()}")
