"""The training half: from a dataset folder to a run folder of checkpoints.

    train(cfg, mcfg, callbacks) -> TrainResult        segcli.train.engine
    resume_state(path, project) -> configs, last.pt   segcli.train.resolve

It meets the inference half (segcli.infer) only through segcli.checkpoint.
"""
