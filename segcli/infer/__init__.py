"""The inference half: from a checkpoint (.pt) or an exported model (.onnx) to masks.

    load_predictor(path) -> Predictor     segcli.infer.predictor (torch or ONNX Runtime backend)
    run_predict / run_evaluate            segcli.infer.predict, segcli.infer.evaluate
    export_model                          segcli.infer.export

It meets the training half (segcli.train) only through segcli.checkpoint.
"""
