"""Plausible wrong answers to ps9_domain_shift, and the autograded test cells each must lose.

Per part, mistakes the visible test already catches and mistakes only the hidden test catches
(so the hidden tests are shown to be needed), plus correct answers written differently, which
must keep every point. The parts are independent: each test builds its own models and data, and
part (e)'s hidden test puts a reference `transfer_verdict` in place of the student's, so a
mistake in one part costs nothing in another.
"""
from grading import WrongAnswer, solution_source, swap

ADABN = solution_source("ps9_domain_shift", "adapt_bn")
DOMAIN = solution_source("ps9_domain_shift", "domain_accuracy")
PROBE = solution_source("ps9_domain_shift", "probe_accuracies")
VERDICT = solution_source("ps9_domain_shift", "transfer_verdict")
CONTROL = solution_source("ps9_domain_shift", "negative_transfer_verdicts")


WRONG_ANSWERS = [
    # (a) adapt_bn -------------------------------------------------------------------------------
    WrongAnswer(  # keeps the default momentum: an exponential average that starts from the reset 0/1
        "ema_momentum_kept",
        {"adapt_bn": swap(ADABN, "            bn.momentum = None          # cumulative average over"
                                 " the batches of the pass\n", "")},
        loses={"test_adapt_bn", "test_adapt_bn_hidden"},
    ),
    WrongAnswer(  # the whole model in train mode for the pass: dropout drops units while measuring
        "whole_model_in_train_mode",
        {"adapt_bn": swap(ADABN, "            m.training = False          # set directly: a frozen"
                                 " layer's train() would refuse\n", "            m.training = True\n")},
        loses={"test_adapt_bn_hidden"},
    ),
    WrongAnswer(  # bn.train(): a layer frozen by tlutils.freeze refuses and keeps the reset 0/1
        "train_method_on_frozen_layers",
        {"adapt_bn": swap(ADABN, "            bn.training = True\n", "            bn.train()\n")},
        loses={"test_adapt_bn_hidden"},
    ),
    WrongAnswer(  # PyTorch's update_bn: model.train() for the pass (dropout, frozen layers)
        "swa_update_bn",
        {"adapt_bn": (
            "def adapt_bn(model, images, batch_size=256):\n"
            "    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]\n"
            "    torch.optim.swa_utils.update_bn(batches, model)\n"
            "    return model\n"
        )},
        loses={"test_adapt_bn_hidden"},
    ),
    WrongAnswer(  # correct behaviour, but through the helper the part asks to write by hand
        "calls_tlutils_adapt_batch_norm",
        {"adapt_bn": (
            "def adapt_bn(model, images, batch_size=256):\n"
            "    unlabelled = TensorDataset(images, torch.zeros(len(images), dtype=torch.long))\n"
            "    return tlutils.adapt_batch_norm(model, tlutils.TensorLoader(unlabelled, batch_size))\n"
        )},
        loses={"test_adapt_bn_hidden"},
    ),
    WrongAnswer(  # the pass records an autograd graph for nothing
        "adabn_with_gradients",
        {"adapt_bn": swap(ADABN, "torch.no_grad()", "torch.enable_grad()")},
        loses={"test_adapt_bn_hidden"},
    ),
    WrongAnswer(  # every layer keeps momentum=None afterwards
        "momentum_not_restored",
        {"adapt_bn": swap(ADABN, "            bn.momentum = momentum\n", "            pass\n")},
        loses={"test_adapt_bn_hidden"},
    ),
    WrongAnswer(  # restores the model's mode only: a module the caller had set apart follows it
        "mode_restored_from_the_top",
        {"adapt_bn": swap(ADABN, "        for m, mode in modes.items():\n"
                                 "            m.training = mode\n",
                          "        model.train(modes[model])\n")},
        loses={"test_adapt_bn_hidden"},
    ),
    WrongAnswer(  # inference_mode instead of no_grad: correct
        "adabn_inference_mode",
        {"adapt_bn": swap(ADABN, "torch.no_grad()", "torch.inference_mode()")},
        loses=set(),
    ),
    WrongAnswer(  # another correct way: torch.split, nn.Module.train on each layer, saved tuples
        "adabn_written_differently",
        {"adapt_bn": (
            "def adapt_bn(model, images, batch_size=256):\n"
            "    norms = [m for m in model.modules()\n"
            "             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]\n"
            "    saved = [(m, m.training) for m in model.modules()]\n"
            "    momenta = [(bn, bn.momentum) for bn in norms]\n"
            "    for m in model.modules():\n"
            "        nn.Module.train(m, False)\n"
            "    for bn in norms:\n"
            "        bn.reset_running_stats()\n"
            "        bn.momentum = None\n"
            "        nn.Module.train(bn, True)\n"
            "    with torch.no_grad():\n"
            "        for batch in torch.split(images, batch_size):\n"
            "            model(batch)\n"
            "    for m, mode in saved:\n"
            "        m.training = mode\n"
            "    for bn, momentum in momenta:\n"
            "        bn.momentum = momentum\n"
            "    return model\n"
        )},
        loses=set(),
    ),
    # (b) domain_accuracy, proxy_a_distance ------------------------------------------------------
    WrongAnswer(  # scores the classifier on the half it was fitted on
        "scored_on_fitting_half",
        {"domain_accuracy": swap(DOMAIN, "classifier.score(x_val, d_val)", "classifier.score(x_fit, d_fit)")},
        loses={"test_domain_accuracy_hidden"},
    ),
    WrongAnswer(  # unequal domains kept as they are: always answering "source" scores 82%
        "domains_not_balanced",
        {"domain_accuracy": swap(swap(swap(swap(
            DOMAIN,
            "    n = min(len(xs), len(xt))                     # balanced: chance is 50%\n", ""),
            "    xs = xs[rng.choice(len(xs), n, replace=False)]\n", ""),
            "    xt = xt[rng.choice(len(xt), n, replace=False)]\n", ""),
            "d = np.r_[np.zeros(n), np.ones(n)]", "d = np.r_[np.zeros(len(xs)), np.ones(len(xt))]")},
        loses={"test_domain_accuracy_hidden"},
    ),
    WrongAnswer(  # no StandardScaler: the L2 penalty buries a feature measured on a small scale
        "not_standardised",
        {"domain_accuracy": swap(DOMAIN, "make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))",
                                 "LogisticRegression(max_iter=2000)")},
        loses={"test_domain_accuracy_hidden"},
    ),
    WrongAnswer(  # a fixed split whatever the seed
        "seed_ignored",
        {"domain_accuracy": swap(swap(DOMAIN, "default_rng(seed)", "default_rng(0)"),
                                 "random_state=seed", "random_state=0")},
        loses={"test_domain_accuracy_hidden"},
    ),
    WrongAnswer(  # 1 - 2 err: the proxy A-distance without its factor 2
        "proxy_without_factor_two",
        {"domain_accuracy": swap(DOMAIN, "return 2 * (1 - 2 * err)", "return 1 - 2 * err")},
        loses={"test_domain_accuracy", "test_domain_accuracy_hidden"},
    ),
    WrongAnswer(  # percent, as chapter 6 prints it, where a fraction is asked for
        "domain_accuracy_in_percent",
        {"domain_accuracy": swap(DOMAIN, "return float(classifier.score(x_val, d_val))",
                                 "return float(100 * classifier.score(x_val, d_val))")},
        loses={"test_domain_accuracy", "test_domain_accuracy_hidden"},
    ),
    WrongAnswer(  # two-fold cross-validation, both halves held out in turn: correct
        "domain_cross_validated",
        {"domain_accuracy": (
            "def domain_accuracy(source, target, seed=0):\n"
            "    from sklearn.model_selection import StratifiedKFold, cross_val_score\n"
            "    rng = np.random.default_rng(seed)\n"
            "    n = min(len(source), len(target))\n"
            "    xs = source.flatten(1)[torch.from_numpy(rng.permutation(len(source))[:n])]\n"
            "    xt = target.flatten(1)[torch.from_numpy(rng.permutation(len(target))[:n])]\n"
            "    x = torch.cat([xs, xt]).numpy()\n"
            "    d = np.r_[np.zeros(n), np.ones(n)]\n"
            "    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)\n"
            "    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))\n"
            "    return float(cross_val_score(classifier, x, d, cv=folds).mean())\n"
            "\n"
            "\n"
            "def proxy_a_distance(err):\n"
            "    return 2.0 - 4.0 * err\n"
        )},
        loses=set(),
    ),
    # (c) probe_accuracies -----------------------------------------------------------------------
    WrongAnswer(  # scores the probe on the images it was fitted on
        "probe_scored_on_labelled_images",
        {"probe_accuracies": swap(PROBE, "probe_accuracy(probe, TensorDataset(test_features, test_y))",
                                  "probe_accuracy(probe, TensorDataset(features, y))")},
        loses={"test_probe_accuracies", "test_probe_accuracies_hidden"},
    ),
    WrongAnswer(  # features that carry gradients: the probe cannot even turn them into numpy
        "features_with_gradients",
        {"probe_accuracies": swap(PROBE, "torch.no_grad()", "torch.enable_grad()")},
        loses={"test_probe_accuracies", "test_probe_accuracies_hidden"},
    ),
    WrongAnswer(  # draws the labelled images by position in the list, not by seed
        "subset_by_position",
        {"probe_accuracies": swap(swap(PROBE, "    for seed in seeds:\n", "    for i, seed in enumerate(seeds):\n"),
                                  "few_shot_subset(pool, k, seed)", "few_shot_subset(pool, k, i)")},
        loses={"test_probe_accuracies_hidden"},
    ),
    WrongAnswer(  # one backbone for every seed: the random control is drawn once
        "one_backbone_for_all_seeds",
        {"probe_accuracies": swap(PROBE, "    for seed in seeds:\n        backbone = backbone_for_seed(seed)\n",
                                  "    backbone = backbone_for_seed(seeds[0])\n    for seed in seeds:\n")},
        loses={"test_probe_accuracies_hidden"},
    ),
    WrongAnswer(  # features in whatever mode the backbone came in: BatchNorm uses batch statistics
        "features_in_train_mode",
        {"probe_accuracies": swap(PROBE, "        backbone.eval()              # frozen: stored BatchNorm"
                                         " statistics, none updated\n", "")},
        loses={"test_probe_accuracies_hidden"},
    ),
    WrongAnswer(  # leaves the caller's backbone in eval mode
        "backbone_left_in_eval",
        {"probe_accuracies": swap(PROBE, "            backbone.train(was_training)\n", "            pass\n")},
        loses={"test_probe_accuracies_hidden"},
    ),
    WrongAnswer(  # tlutils.extract_features over loaders (eval mode, no gradients): correct
        "probe_with_extract_features",
        {"probe_accuracies": (
            "def probe_accuracies(backbone_for_seed, pool, test_set, k, seeds):\n"
            "    accuracies = []\n"
            "    for seed in seeds:\n"
            "        backbone = backbone_for_seed(seed)\n"
            "        labelled = tlutils.few_shot_subset(pool, k, seed)\n"
            "        train = tlutils.extract_features(backbone, tlutils.TensorLoader(labelled, 256))\n"
            "        test = tlutils.extract_features(backbone, tlutils.TensorLoader(test_set, 256))\n"
            "        accuracies.append(probe_accuracy(fit_probe(train), test))\n"
            "    return accuracies\n"
        )},
        loses=set(),
    ),
    # (d) transfer_verdict -----------------------------------------------------------------------
    WrongAnswer(  # with_source and without_source swapped: a loss reads as a gain
        "difference_reversed",
        {"transfer_verdict": swap(VERDICT, "diff = a - b", "diff = b - a")},
        loses={"test_transfer_verdict", "test_transfer_verdict_hidden"},
    ),
    WrongAnswer(  # resamples each method on its own: the seeds' shared luck stays in the interval
        "unpaired_bootstrap",
        {"transfer_verdict": swap(
            VERDICT,
            "    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)\n",
            "    means = (a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1)\n"
            "             - b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(axis=1))\n")},
        loses={"test_transfer_verdict", "test_transfer_verdict_hidden"},
    ),
    WrongAnswer(  # decides by the sign of the mean difference, whatever the interval says
        "verdict_from_the_mean",
        {"transfer_verdict": swap(swap(VERDICT, "if high < 0:", "if diff.mean() < 0:"),
                                  "elif low > 0:", "elif diff.mean() > 0:")},
        loses={"test_transfer_verdict_hidden"},
    ),
    WrongAnswer(  # resamples without replacement: every resample has the same mean, width 0
        "resampled_without_replacement",
        {"transfer_verdict": swap(
            VERDICT,
            "    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)\n",
            "    means = np.array([rng.choice(diff, len(diff), replace=False).mean() for _ in range(n_boot)])\n")},
        loses={"test_transfer_verdict_hidden"},
    ),
    WrongAnswer(  # a 90% interval where 95% is asked for
        "ninety_percent_interval",
        {"transfer_verdict": swap(VERDICT, "np.quantile(means, [0.025, 0.975])", "np.quantile(means, [0.05, 0.95])")},
        loses={"test_transfer_verdict_hidden"},
    ),
    WrongAnswer(  # accepts a single seed, where no interval can be estimated
        "single_seed_accepted",
        {"transfer_verdict": swap(VERDICT, "    if len(a) < 2:\n"
                                           "        raise ValueError(\"a paired comparison needs at least 2 seeds\")\n", "")},
        loses={"test_transfer_verdict_hidden"},
    ),
    WrongAnswer(  # correct behaviour, but through the helper the part asks to write by hand
        "calls_tlutils_paired_difference",
        {"transfer_verdict": (
            "def transfer_verdict(with_source, without_source, n_boot=10_000, seed=0):\n"
            "    d = tlutils.paired_difference(with_source, without_source, n_boot=n_boot, seed=seed)\n"
            "    if d.reliably_negative():\n"
            "        return \"negative transfer\", d.low, d.high\n"
            "    if d.reliably_positive():\n"
            "        return \"positive transfer\", d.low, d.high\n"
            "    return \"no reliable difference\", d.low, d.high\n"
        )},
        loses={"test_transfer_verdict_hidden"},
    ),
    WrongAnswer(  # rng.choice with replacement and np.percentile: correct
        "verdict_with_percentile",
        {"transfer_verdict": (
            "def transfer_verdict(with_source, without_source, n_boot=10_000, seed=0):\n"
            "    if len(with_source) != len(without_source) or len(with_source) < 2:\n"
            "        raise ValueError(\"need paired accuracies of at least 2 seeds\")\n"
            "    diff = np.array(with_source, dtype=float) - np.array(without_source, dtype=float)\n"
            "    rng = np.random.default_rng(seed)\n"
            "    means = rng.choice(diff, size=(n_boot, len(diff)), replace=True).mean(axis=1)\n"
            "    low, high = np.percentile(means, [2.5, 97.5])\n"
            "    verdict = (\"negative transfer\" if high < 0 else \"positive transfer\" if low > 0\n"
            "               else \"no reliable difference\")\n"
            "    return verdict, float(low), float(high)\n"
        )},
        loses=set(),
    ),
    # (e) negative_transfer_verdicts -------------------------------------------------------------
    WrongAnswer(  # "worse than the good source" taken for negative transfer
        "shuffled_against_shipped",
        {"negative_transfer_verdicts": (
            "def negative_transfer_verdicts(accuracies):\n"
            "    return {\"shipped\": transfer_verdict(accuracies[\"shipped\"], accuracies[\"random weights\"]),\n"
            "            \"shuffled\": transfer_verdict(accuracies[\"shuffled\"], accuracies[\"shipped\"])}\n"
        )},
        loses={"test_negative_transfer_verdicts_hidden"},
    ),
    WrongAnswer(  # the control first: every verdict turned around
        "control_first",
        {"negative_transfer_verdicts": swap(
            CONTROL, "transfer_verdict(accuracies[name], accuracies[\"random weights\"])",
            "transfer_verdict(accuracies[\"random weights\"], accuracies[name])")},
        loses={"test_negative_transfer_verdicts_hidden"},
    ),
    WrongAnswer(  # the verdicts computed on accuracies in percent: correct
        "verdicts_in_percent",
        {"negative_transfer_verdicts": swap(
            CONTROL, "transfer_verdict(accuracies[name], accuracies[\"random weights\"])",
            "transfer_verdict([100 * a for a in accuracies[name]],\n"
            "                                   [100 * a for a in accuracies[\"random weights\"]])")},
        loses=set(),
    ),
]
