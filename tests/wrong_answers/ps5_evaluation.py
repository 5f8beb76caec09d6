"""Plausible wrong answers to ps5_evaluation, and the autograded test cells each must lose.

Per part, one mistake the visible test already catches and at least one only the hidden test
catches (so the hidden tests are shown to be needed), plus a correct answer written differently
(it must keep every point). The (b) hidden test calls the student's function with a correct
confusion matrix, so a mistake in (a) costs nothing there; (b)'s visible test uses the student's
own confusion matrix, so an (a) mistake that shows on its small example loses it too.
"""
from grading import WrongAnswer, solution_source, swap

CM = solution_source("ps5_evaluation", "confusion_matrix")
F1 = solution_source("ps5_evaluation", "macro_micro_f1")
SPLIT = solution_source("ps5_evaluation", "few_shot_split")
BOOT = solution_source("ps5_evaluation", "bootstrap_interval")


WRONG_ANSWERS = [
    WrongAnswer(  # rows are predictions and columns the truth: the transpose
        "cm_transposed",
        {"confusion_matrix": swap(CM, "np.add.at(cm, (y_true, y_pred), 1)",
                                  "np.add.at(cm, (y_pred, y_true), 1)")},
        loses={"test_confusion_matrix", "test_confusion_matrix_hidden"},
    ),
    WrongAnswer(  # sizes the matrix from the labels it sees: classes missing from the sample vanish
        "cm_infers_size",
        {"confusion_matrix": swap(CM, "    cm = np.zeros(",
                                  "    num_classes = int(max(y_true.max(), y_pred.max())) + 1\n"
                                  "    cm = np.zeros(")},
        loses={"test_confusion_matrix_hidden"},
    ),
    WrongAnswer(  # fancy-index += does not accumulate repeated (true, predicted) pairs; (b)'s visible
        "cm_fancy_index_increment",  # test uses this confusion matrix and loses too
        {"confusion_matrix": swap(CM, "np.add.at(cm, (y_true, y_pred), 1)", "cm[y_true, y_pred] += 1")},
        loses={"test_confusion_matrix_hidden", "test_macro_micro_f1"},
    ),
    WrongAnswer(  # np.zeros without a dtype: float counts, where the task asks for an integer array
        "cm_float_counts",
        {"confusion_matrix": swap(CM, "np.zeros((num_classes, num_classes), dtype=np.int64)",
                                  "np.zeros((num_classes, num_classes))")},
        loses={"test_confusion_matrix"},
    ),
    WrongAnswer(  # a correct answer written differently: one cell number per (true, predicted) pair
        "cm_bincount_right",
        {"confusion_matrix": (
            "def confusion_matrix(y_true, y_pred, num_classes):\n"
            "    cells = np.asarray(y_true) * num_classes + np.asarray(y_pred)\n"
            "    return np.bincount(cells, minlength=num_classes ** 2).reshape(num_classes, num_classes)\n"
        )},
        loses=set(),
    ),
    WrongAnswer(  # macro and micro swapped
        "f1_swapped",
        {"macro_micro_f1": swap(F1, "return float(f1.mean()), float(micro)",
                                "return float(micro), float(f1.mean())")},
        loses={"test_macro_micro_f1", "test_macro_micro_f1_hidden"},
    ),
    WrongAnswer(  # averages only over the classes that occur (sklearn's default labels)
        "f1_present_classes_only",
        {"macro_micro_f1": swap(F1, "return float(f1.mean()), float(micro)",
                                "present = np.union1d(y_true, y_pred)\n"
                                "    return float(f1[present].mean()), float(micro)")},
        loses={"test_macro_micro_f1_hidden"},
    ),
    WrongAnswer(  # the F1 of the mean precision and mean recall, not the mean of the F1s
        "f1_of_mean_precision_recall",
        {"macro_micro_f1": swap(F1, "return float(f1.mean()), float(micro)",
                                "p = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0).mean()\n"
                                "    r = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0).mean()\n"
                                "    return float(2 * p * r / (p + r)) if p + r > 0 else 0.0, float(micro)")},
        loses={"test_macro_micro_f1_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: 0/0 = nan (RuntimeWarnings), then nan -> 0
        "f1_nan_to_num",
        {"macro_micro_f1": swap(F1, "f1 = np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0)",
                                "f1 = np.nan_to_num(2 * tp / den)")},
        loses=set(),
    ),
    WrongAnswer(  # a correct answer written differently: micro F1 as the accuracy it equals
        "f1_micro_as_accuracy",
        {"macro_micro_f1": swap(F1, "return float(f1.mean()), float(micro)",
                                "return float(f1.mean()), float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))")},
        loses=set(),
    ),
    WrongAnswer(  # the "rest" is the whole pool: it overlaps the labelled examples (leakage)
        "split_rest_overlaps",
        {"few_shot_split": swap(SPLIT, "rest_idx = np.setdiff1d(np.arange(len(labels)), train_idx)",
                                "rest_idx = np.arange(len(labels))")},
        loses={"test_few_shot_split", "test_few_shot_split_hidden"},
    ),
    WrongAnswer(  # not random: always the first k of each class, whatever the seed
        "split_first_k",
        {"few_shot_split": swap(SPLIT, "rng.choice(members, size=k, replace=False)", "members[:k]")},
        loses={"test_few_shot_split_hidden"},
    ),
    WrongAnswer(  # NumPy's global generator instead of the seeded one: not reproducible
        "split_global_random",
        {"few_shot_split": swap(SPLIT, "rng.choice(members, size=k, replace=False)",
                                "np.random.choice(members, size=k, replace=False)")},
        loses={"test_few_shot_split", "test_few_shot_split_hidden"},
    ),
    WrongAnswer(  # rng.choice draws with replacement by default: repeated indices, fewer than k distinct
        "split_choice_with_replacement",
        {"few_shot_split": swap(SPLIT, "rng.choice(members, size=k, replace=False)", "rng.choice(members, size=k)")},
        loses={"test_few_shot_split_hidden"},
    ),
    WrongAnswer(  # reproducible, but by reseeding NumPy's global generator: the caller's random state is reset
        "split_seeds_global_state",
        {"few_shot_split": swap(swap(SPLIT, "rng = np.random.default_rng(seed)", "np.random.seed(seed)"),
                                "rng.choice(members, size=k, replace=False)",
                                "np.random.choice(members, size=k, replace=False)")},
        loses={"test_few_shot_split_hidden"},
    ),
    WrongAnswer(  # resampling without replacement: every resample is the test set again
        "boot_without_replacement",
        {"bootstrap_interval": swap(
            BOOT, "resamples = rng.integers(0, len(correct), size=(n_boot, len(correct)))",
            "resamples = np.stack([rng.permutation(len(correct)) for _ in range(n_boot)])")},
        loses={"test_bootstrap_interval", "test_bootstrap_interval_hidden"},
    ),
    WrongAnswer(  # mean +- one standard deviation of the resamples: a 68% interval, not 95%
        "boot_one_std",
        {"bootstrap_interval": swap(
            BOOT, "low, high = np.quantile(accuracies, [alpha / 2, 1 - alpha / 2])",
            "low, high = accuracies.mean() - accuracies.std(), accuracies.mean() + accuracies.std()")},
        loses={"test_bootstrap_interval_hidden"},
    ),
    WrongAnswer(  # the alpha and 1 - alpha quantiles: a 90% interval for alpha = 0.05
        "boot_alpha_not_halved",
        {"bootstrap_interval": swap(BOOT, "[alpha / 2, 1 - alpha / 2]", "[alpha, 1 - alpha]")},
        loses={"test_bootstrap_interval_hidden"},
    ),
    WrongAnswer(  # off by one: integers' upper bound is exclusive already, the last example is never drawn
        "boot_never_draws_the_last",
        {"bootstrap_interval": swap(BOOT, "rng.integers(0, len(correct), ", "rng.integers(0, len(correct) - 1, ")},
        loses={"test_bootstrap_interval_hidden"},
    ),
    WrongAnswer(  # a correct answer written differently: returns np.quantile's array of two numbers
        "boot_returns_array",
        {"bootstrap_interval": swap(
            BOOT, "    low, high = np.quantile(accuracies, [alpha / 2, 1 - alpha / 2])\n    return float(low), float(high)",
            "    return np.quantile(accuracies, [alpha / 2, 1 - alpha / 2])")},
        loses=set(),
    ),
    WrongAnswer(  # always the 95% interval, whatever alpha asks for
        "boot_ignores_alpha",
        {"bootstrap_interval": swap(BOOT, "[alpha / 2, 1 - alpha / 2]", "[0.025, 0.975]")},
        loses={"test_bootstrap_interval_hidden"},
    ),
]
