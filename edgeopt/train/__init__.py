"""The one trainer every training stage uses (fine-tuning, and the pruning, distillation and QAT stages built on
it): losses (:mod:`.losses`), schedule, checkpoints and resume, tf.distribute strategies, the data pipeline.

- :func:`edgeopt.train.trainer.train`: the training loop.
- :mod:`edgeopt.train.setup`: from a run's context to the trainer's data and objective.
- :mod:`edgeopt.train.stage`: the ``train.finetune`` stage.

Nothing here imports TensorFlow at import time.
"""
