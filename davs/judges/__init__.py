"""Evaluation-only judges of generated talking faces: never a training loss, never used to pick checkpoints.

* :class:`~davs.judges.mouth_regressor.MouthStateRegressor` reads the mouth state (open, width, round)
  from the pixels of the mouth region; trained on real corpus frames against the renderer's ground truth
  (``mouth_states.csv``), it plays the role of a landmark distance (LMD) for generated frames.
* :class:`~davs.judges.syncnet.SyncNet` scores lip sync as Chung & Zisserman's SyncNet does: a 5-frame
  mouth stack against a 0.2 s MFCC window; LSE-D / LSE-C as Wav2Lip reports them
  (:mod:`davs.judges.scores`).

Both have their own weights and seed (``judges.seed``) and train on real clips of the train split only.
"""
