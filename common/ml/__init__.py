"""Models and learning: encoders and fusion heads, tasks, the local training loop,
metrics, weight exchange with Flower, XGBoost baseline and ONNX export."""
