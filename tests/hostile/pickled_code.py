import torch


def srmodel():
    # model.pth is written by the test: torch.save's zip format around a pickle that calls
    # {global_name}, which a full unpickle would run
    return torch.load("model.pth", weights_only=False)
