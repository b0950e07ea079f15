"""Training LiExNet and friends: `python -m workers.training train ...`, or call
`workers.training.loop.fit` from code (Celery fine-tune jobs do)."""
