#!/usr/bin/env python3
"""Train the demo model's tree-ensemble scorers on the demo snapshot (models/features.csv).

    pip install numpy==2.4.6 xgboost-cpu==3.2.0 lightgbm==4.7.0
    python examples/train_demo_trees.py

Writes, beside models/model.json:
    models/device_upgrade_5g.xgb.json   XGBoost binary:logistic, 60 trees, depth 4
    models/streaming_bundle.lgb.txt     LightGBM binary, 40 trees, 15 leaves

The labels are synthetic but plausible (older devices and heavier users take the 5G upgrade;
app-heavy, higher-ARPU customers take the streaming bundle), drawn with a fixed seed, so the
files are reproducible. Missing values stay NaN: both libraries learn a default direction.
"""
import csv
import os

import lightgbm as lgb
import numpy as np
import xgboost as xgb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")

with open(os.path.join(MODELS, "features.csv")) as f:
    reader = csv.reader(f)
    header = next(reader)[1:]
    rows = [[float(v) if v != "" else np.nan for v in r[1:]] for r in reader]
X = np.array(rows, dtype=np.float32)
col = {name: i for i, name in enumerate(header)}
rng = np.random.default_rng(20261122)


def label(z):
    p = 1.0 / (1.0 + np.exp(-z))
    return (rng.random(len(p)) < p).astype(np.int32)


def c(name, fill=0.0):
    v = X[:, col[name]].astype(np.float64)
    return np.where(np.isnan(v), fill, v)


UPGRADE_FEATURES = ["device_age_months", "is_5g_device", "data_gb_30d", "arpu_30d", "tenure_months", "app_sessions_7d"]
z = -3.0 + 0.06 * c("device_age_months") - 1.2 * c("is_5g_device") + 0.02 * c("data_gb_30d") + 0.015 * c("arpu_30d")
y = label(z)
dtrain = xgb.DMatrix(X[:, [col[n] for n in UPGRADE_FEATURES]], label=y, feature_names=UPGRADE_FEATURES, missing=np.nan)
booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.2, "seed": 7}, dtrain, num_boost_round=60)
booster.save_model(os.path.join(MODELS, "device_upgrade_5g.xgb.json"))

STREAM_FEATURES = ["app_sessions_7d", "arpu_30d", "data_gb_30d", "nps_score", "is_prepaid", "web_sessions_7d"]
z = -3.5 + 0.12 * c("app_sessions_7d") + 0.02 * c("arpu_30d") + 0.15 * c("nps_score", 5.0) - 0.8 * c("is_prepaid")
y = label(z)
ds = lgb.Dataset(X[:, [col[n] for n in STREAM_FEATURES]], label=y, feature_name=STREAM_FEATURES, free_raw_data=False)
gbm = lgb.train({"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "seed": 7, "verbose": -1,
                 "deterministic": True, "num_threads": 1}, ds, num_boost_round=40)
gbm.save_model(os.path.join(MODELS, "streaming_bundle.lgb.txt"))
# The libraries' own probabilities for the first 300 customers, for the parity test.
n = 300
ids = []
with open(os.path.join(MODELS, "features.csv")) as f:
    reader = csv.reader(f)
    next(reader)
    for i, r in enumerate(reader):
        if i == n:
            break
        ids.append(r[0])
p_up = booster.predict(xgb.DMatrix(X[:n, [col[c_] for c_ in UPGRADE_FEATURES]], feature_names=UPGRADE_FEATURES, missing=np.nan))
p_st = gbm.predict(X[:n, [col[c_] for c_ in STREAM_FEATURES]])
out = os.path.join(ROOT, "tests", "fixtures", "trees", "demo_predictions.csv")
with open(out, "w") as f:
    f.write("customer_id,device_upgrade_5g,streaming_bundle\n")
    for i in range(n):
        f.write(f"{ids[i]},{float(p_up[i])!r},{float(p_st[i])!r}\n")
print("wrote models/device_upgrade_5g.xgb.json, models/streaming_bundle.lgb.txt and", out)
