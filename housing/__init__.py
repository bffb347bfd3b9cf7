"""What the training job and the model server both rely on, so that neither imports the other.

    housing/
      contract.py    the features, their physical bounds, the feature profile's name and version
      registry.py    the registered model's name, aliases and version tags
      policy.py      the retraining policy, its signals, the decision and its outcomes
      drift.py       PSI (and KS for context) of a live window against the profile
      regression.py  R², RMSE and MAE: one implementation, one edge rule
      urls.py        database URLs: the SQLite file of a URL, made absolute
      servingdb/     the serving database: tables, stores, lease, migrations

Nothing here imports training_job or model_server (tests/test_layering.py).
"""
