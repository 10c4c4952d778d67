#!/usr/bin/env python3
"""Train the demo model's tree-ensemble scorers on the demo snapshot (models/features.csv).

    pip install numpy==2.4.6 pandas==3.1.1 xgboost-cpu==3.2.0 lightgbm==4.7.0
    python examples/train_demo_trees.py

Writes, beside models/model.json:
    models/device_upgrade_5g.xgb.json   XGBoost binary:logistic, 60 trees, depth 4
    models/streaming_bundle.lgb.txt     LightGBM binary, 40 trees, 15 leaves
    models/premium_upgrade.lgb.txt      LightGBM binary, 40 trees, 15 leaves, with the string
                                        columns segment, plan and region as pandas categories
                                        (categorical splits; nextbest reads the names LightGBM
                                        stores in pandas_categorical)

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

STRINGS = ["segment", "plan", "region"]
with open(os.path.join(MODELS, "features.csv")) as f:
    reader = csv.reader(f)
    full_header = next(reader)[1:]
    all_rows = [r[1:] for r in reader]
# The numeric columns as before; the string columns (the last ones) apart.
numeric = [i for i, name in enumerate(full_header) if name not in STRINGS]
header = [full_header[i] for i in numeric]
rows = [[float(r[i]) if r[i] != "" else np.nan for i in numeric] for r in all_rows]
X = np.array(rows, dtype=np.float32)
col = {name: i for i, name in enumerate(header)}
text = {name: [r[full_header.index(name)] for r in all_rows] for name in STRINGS}
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

# A model trained on the string columns as pandas categories, as a data scientist would.
import pandas as pd  # noqa: E402

rng2 = np.random.default_rng(20261204)
PREMIUM_NUMERIC = ["arpu_30d", "tenure_months", "data_gb_30d"]
frame = pd.DataFrame({n: X[:, col[n]].astype(np.float64) for n in PREMIUM_NUMERIC})
for name in STRINGS:
    frame[name] = pd.Categorical([v if v != "" else None for v in text[name]])
seg = frame["segment"].map({"bronze": 0.0, "silver": 0.5, "gold": 1.2, "platinum": 1.8}).astype(float).fillna(0.3).to_numpy()
plan = frame["plan"].isin(["unlimited", "unlimited_5g", "family"]).to_numpy()
capital = (frame["region"] == "capital").to_numpy()
z = -2.6 + seg + 0.9 * plan + 0.5 * capital + 0.01 * c("arpu_30d")
p = 1.0 / (1.0 + np.exp(-z))
y = (rng2.random(len(p)) < p).astype(np.int32)
PREMIUM_FEATURES = PREMIUM_NUMERIC + STRINGS
dp = lgb.Dataset(frame[PREMIUM_FEATURES], label=y, categorical_feature=STRINGS, free_raw_data=False)
premium = lgb.train({"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "seed": 7, "verbose": -1,
                     "deterministic": True, "num_threads": 1, "min_data_per_group": 20, "cat_smooth": 10},
                    dp, num_boost_round=40)
premium.save_model(os.path.join(MODELS, "premium_upgrade.lgb.txt"))
p_pr = premium.predict(frame[PREMIUM_FEATURES].iloc[:n])
out2 = os.path.join(ROOT, "tests", "fixtures", "trees", "demo_premium_predictions.csv")
with open(out2, "w") as f:
    f.write("customer_id,premium_upgrade\n")
    for i in range(n):
        f.write(f"{ids[i]},{float(p_pr[i])!r}\n")
print("wrote models/device_upgrade_5g.xgb.json, models/streaming_bundle.lgb.txt, models/premium_upgrade.lgb.txt,", out, "and", out2)
