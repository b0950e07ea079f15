"""The torch side of Affectwatch: LiExNet, data importers, training, evaluation, export.

Celery tasks build on `workers.training.loop.fit` (arrays in, callbacks out), so
nothing here depends on the CLI or on Django.
"""
