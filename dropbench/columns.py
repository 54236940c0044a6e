"""The CSV contract: the columns of every file dropbench writes and reads back, and their order.

A script may read these files by position, and folders written by older versions are read
again, so columns are only ever appended, never renamed, moved or removed. Standard library
only, importing nothing else of dropbench: storage, the engines and the analysis all read the
contract from here.

    runs/<run_id>/curve.csv   CURVE_COLUMNS, one row per evaluated epoch
    curves.csv                run_id, then CURVE_COLUMNS
    runs.csv                  LEAD_COLUMNS, the config's dotted keys, PLATFORM_COLUMNS, RESULT_COLUMNS
    runs/<run_id>/fit.csv     FIT_COLUMNS (1-D data only)
    a check's baseline        its group keys, BASELINE_STATS, BASELINE_METRIC, BASELINE_META
"""

from __future__ import annotations

# ---- curves: one row per evaluation -----------------------------------------------------------
# MSEs in the target's standardised units (as trained), RMSEs in its original units (data=uci;
# the same numbers elsewhere). test_mc_*: the mean of eval.mc_samples stochastic passes (empty
# without MC); test_ll: the Gaussian test log-likelihood with precision eval.tau (empty without).
# train_loss: the training objective (MSE + loss-slot penalties) each step measured before its
# update: at full batch the epoch's one step's; with batch_size, the rows-weighted mean of the
# epoch's batches' objectives (engines/loop.py, where every rule of the training loop is kept).
# learned_p: the learned dropout rate of each layer (concrete dropout), first hidden layer first,
# space separated at full precision (text, not a metric; empty for runs that learn none).
# val_mse: the eval-mode MSE on the validation rows a loop-slot regularizer holds out of the
# training rows (early stopping; empty for runs without them).
CURVE_COLUMNS = ("epoch", "train_mse", "test_mse", "train_loss",
                 "train_rmse", "test_rmse", "test_mc_mse", "test_mc_rmse", "test_ll", "learned_p", "val_mse")
TEXT_COLUMNS = ("learned_p",)
CURVE_REQUIRED = CURVE_COLUMNS[:4]  # every curves.csv has these (folders written before the others)
SCORE_COLUMNS = CURVE_COLUMNS[4:]  # RunResult.scores; RunResult.curve holds CURVE_REQUIRED

# ---- runs.csv: one row per run ----------------------------------------------------------------
LEAD_COLUMNS = ("run_id", "data", "model", "reg", "optim", "seed")
# The platform that computed the run (provenance.py), between the config and the results, always
# (empty for runs stored before dropbench recorded it), so the columns do not move with the rows.
PLATFORM_COLUMNS = ("dropbench_version", "torch_version", "cpu", "cpu_capability", "gpu")
# Every folder's runs.csv has all of these, empty where a run does not compute one (MC and
# log-likelihood columns without eval.mc_samples / eval.tau, runs stored before they existed).
# Those added after `seconds` go at the end, in the order they came.
LATER_CURVE_COLUMNS = ("val_mse",)
METRIC_COLUMNS = tuple(f"final_{c}" for c in CURVE_COLUMNS[1:] if c != "train_loss" and c not in LATER_CURVE_COLUMNS)
# A loop-slot regularizer's (early stopping): the validation MSE the run is reported at, the epoch
# it stopped at (empty: it trained every epoch) and the epoch it is reported at (kept).
STOP_COLUMNS = ("final_val_mse", "stopped_epoch", "kept_epoch")
# The drop probabilities in force where the fast mask stream rounds a requested p to 16 bits
# (dropbench/masks.py): "name=p" for each such regularizer, space separated (empty: as requested).
MASK_COLUMNS = ("effective_p",)
RESULT_COLUMNS = (*METRIC_COLUMNS, "best_test_mse", "best_epoch", "status", "reason", "seconds", *STOP_COLUMNS,
                  *MASK_COLUMNS)

# ---- fit.csv: a 1-D run's fitted curve, in eval mode, on a grid over the training x -----------
FIT_COLUMNS = ("x", "y_pred")

# ---- a check's baseline: one row per group ----------------------------------------------------
BASELINE_STATS = ("n_seeds", "test_mean", "test_std", "train_mean", "train_std")
# The metric the statistics are of (report's --metric, without final_) and which way is better.
# Baselines written before these columns existed are of test MSE, lower is better.
BASELINE_METRIC = ("metric", "better")
# JSON columns: `config`, every config value the group's runs share (a list where they differ:
# a --by coarser than the config), and `platform`, the platforms that computed them with their
# run counts. Baselines written before these columns existed are still read.
BASELINE_META = ("config", "platform")
