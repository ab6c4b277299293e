def srmodel():
    while True:
        pass
