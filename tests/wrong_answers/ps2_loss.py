"""Plausible wrong answers to ps2_loss, and the autograded test cells each must lose.

Per part, one mistake the visible test already catches and one only the hidden test catches
(so the hidden tests are shown to be needed), plus a correct answer that emits a harmless warning
(it must keep every point: nbgrader_config.py filters warnings out of stderr). Parts (b) and (g),
the two softmax gradients, also declare the shortcuts their hidden tests must refuse (autograd,
backward or forward mode; a forbidden softmax) and correct answers written differently, which
must keep every point; part (c) declares the autograd shortcuts its hidden test must refuse too.
"""
from grading import WrongAnswer, solution_source, swap

CE = solution_source("ps2_loss", "cross_entropy")
GRAD = solution_source("ps2_loss", "cross_entropy_grad")
BCE = solution_source("ps2_loss", "bce_with_logits_grad")
L2SP = solution_source("ps2_loss", "l2_sp_penalty")
LS = solution_source("ps2_loss", "label_smoothing_grad")
GRAD_DEF = "def cross_entropy_grad(logits, labels):\n"
LS_DEF = "def label_smoothing_grad(logits, labels, eps):\n"

WRONG_ANSWERS = [
    WrongAnswer(
        "ce_sum_not_mean",
        {"cross_entropy": swap(CE, "(log_norm - picked).mean()", "(log_norm - picked).sum()")},
        loses={"test_cross_entropy", "test_cross_entropy_hidden"},
    ),
    WrongAnswer(  # exp overflows to inf for large logits: right on small inputs only
        "ce_without_max_shift",
        {"cross_entropy": swap(CE, "logits - logits.max(dim=1, keepdim=True).values", "logits")},
        loses={"test_cross_entropy_hidden"},
    ),
    WrongAnswer(  # picks each label's column for every row, an (N, N) matrix, not one entry per
        # row; the visible cases (uniform logits, identical rows) average to the right value anyway
        "ce_picks_label_columns",
        {"cross_entropy": swap(CE, "shifted.gather(1, labels[:, None]).squeeze(1)", "shifted[:, labels]")},
        loses={"test_cross_entropy_hidden"},
    ),
    WrongAnswer(  # calls the library instead of deriving: the hidden test makes it raise
        "ce_calls_library",
        {"cross_entropy": "def cross_entropy(logits, labels):\n    return F.cross_entropy(logits, labels)\n"},
        loses={"test_cross_entropy_hidden"},
    ),
    WrongAnswer(  # the same shortcut by other spellings: a Tensor method, torch.special, nll_loss
        "ce_calls_tensor_log_softmax",
        {"cross_entropy": "def cross_entropy(logits, labels):\n"
                          "    return -logits.log_softmax(1).gather(1, labels[:, None]).mean()\n"},
        loses={"test_cross_entropy_hidden"},
    ),
    WrongAnswer(
        "ce_calls_special_logsumexp",
        {"cross_entropy": "def cross_entropy(logits, labels):\n"
                          "    log_norm = torch.special.logsumexp(logits, dim=1)\n"
                          "    return (log_norm - logits.gather(1, labels[:, None]).squeeze(1)).mean()\n"},
        loses={"test_cross_entropy_hidden"},
    ),
    WrongAnswer(
        "ce_calls_nll_loss",
        {"cross_entropy": "def cross_entropy(logits, labels):\n"
                          "    shifted = logits - logits.max(dim=1, keepdim=True).values\n"
                          "    log_probs = shifted - shifted.exp().sum(dim=1, keepdim=True).log()\n"
                          "    return F.nll_loss(log_probs, labels)\n"},
        loses={"test_cross_entropy_hidden"},
    ),
    WrongAnswer(
        "ce_warns_but_right",
        {"cross_entropy": "import warnings\n\n" + swap(
            CE, "    shifted =", '    warnings.warn("harmless", UserWarning)\n    shifted =')},
        loses=set(),
    ),
    WrongAnswer(
        "grad_sign_flipped",
        {"cross_entropy_grad": swap(GRAD, "(probs - onehot)", "(onehot - probs)")},
        loses={"test_cross_entropy_grad", "test_cross_entropy_grad_hidden"},
    ),
    WrongAnswer(  # the visible test has N = 1, where dividing by N changes nothing
        "grad_not_divided_by_batch",
        {"cross_entropy_grad": swap(GRAD, "(probs - onehot) / logits.shape[0]", "probs - onehot")},
        loses={"test_cross_entropy_grad_hidden"},
    ),
    WrongAnswer(  # shifts by the batch's maximum, not each row's: a row far below it underflows to 0 / 0
        "grad_global_max_shift",
        {"cross_entropy_grad": swap(GRAD, "logits.max(dim=1, keepdim=True).values", "logits.max()")},
        loses={"test_cross_entropy_grad_hidden"},
    ),
    WrongAnswer(  # a hand-written loss, differentiated by torch.autograd.backward
        "grad_autograd_backward",
        {"cross_entropy_grad": GRAD_DEF + (
            "    z = logits.detach().clone().requires_grad_()\n"
            "    shifted = z - z.max(dim=1, keepdim=True).values\n"
            "    loss = (shifted.exp().sum(dim=1).log() - shifted.gather(1, labels[:, None]).squeeze(1)).mean()\n"
            "    torch.autograd.backward(loss, inputs=[z])\n"
            "    return z.grad\n")},
        loses={"test_cross_entropy_grad_hidden"},
    ),
    WrongAnswer(  # the same loss, differentiated in forward mode (torch.func.jacfwd)
        "grad_forward_mode_jacfwd",
        {"cross_entropy_grad": GRAD_DEF + (
            "    def loss(z):\n"
            "        shifted = z - z.max(dim=1, keepdim=True).values\n"
            "        return (shifted.exp().sum(dim=1).log() - shifted.gather(1, labels[:, None]).squeeze(1)).mean()\n"
            "    return torch.func.jacfwd(loss)(logits)\n")},
        loses={"test_cross_entropy_grad_hidden"},
    ),
    # The softmax by forbidden spellings: torch.special, log-softmax then exp, softmin of -z.
    *[WrongAnswer(
        f"grad_probs_from_{name}",
        {"cross_entropy_grad": swap(
            GRAD, "exp = (logits - logits.max(dim=1, keepdim=True).values).exp()\n"
                  "    probs = exp / exp.sum(dim=1, keepdim=True)\n",
            f"probs = {probs}\n")},
        loses={"test_cross_entropy_grad_hidden"},
    ) for name, probs in [("special_softmax", "torch.special.softmax(logits, dim=1)"),
                          ("special_log_softmax", "torch.special.log_softmax(logits, dim=1).exp()"),
                          ("tensor_log_softmax", "logits.log_softmax(dim=1).exp()"),
                          ("softmin", "F.softmin(-logits, dim=1)")]],
    WrongAnswer(  # correct, written differently: a stable softmax through logsumexp (allowed), F.one_hot
        "grad_logsumexp_one_hot",
        {"cross_entropy_grad": GRAD_DEF + (
            "    probs = (logits - torch.logsumexp(logits, dim=1, keepdim=True)).exp()\n"
            "    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)\n"
            "    return (probs - onehot) / len(logits)\n")},
        loses=set(),
    ),
    WrongAnswer(  # dL/dp instead of dL/dz: forgets the sigmoid's derivative p(1 - p)
        "bce_grad_wrt_probability",
        {"bce_with_logits_grad": swap(
            BCE,
            "return (torch.sigmoid(logits) - targets) / logits.numel()",
            "p = torch.sigmoid(logits)\n    return (p - targets) / (p * (1 - p)) / logits.numel()",
        )},
        loses={"test_bce_with_logits_grad", "test_bce_with_logits_grad_hidden"},
    ),
    WrongAnswer(  # divides by the rows, not the entries: right for 1-D logits only
        "bce_mean_over_rows",
        {"bce_with_logits_grad": swap(BCE, "logits.numel()", "logits.shape[0]")},
        loses={"test_bce_with_logits_grad_hidden"},
    ),
    WrongAnswer(  # differentiates PyTorch's loss by torch.autograd.backward: "without autograd" says no
        "bce_autograd_backward",
        {"bce_with_logits_grad": (
            "def bce_with_logits_grad(logits, targets):\n"
            "    z = logits.detach().clone().requires_grad_()\n"
            "    torch.autograd.backward(F.binary_cross_entropy_with_logits(z, targets), inputs=[z])\n"
            "    return z.grad\n")},
        loses={"test_bce_with_logits_grad_hidden"},
    ),
    WrongAnswer(  # the same, in forward mode (torch.func.jacfwd)
        "bce_forward_mode_jacfwd",
        {"bce_with_logits_grad": (
            "def bce_with_logits_grad(logits, targets):\n"
            "    return torch.func.jacfwd(lambda z: F.binary_cross_entropy_with_logits(z, targets))(logits)\n")},
        loses={"test_bce_with_logits_grad_hidden"},
    ),
    WrongAnswer(
        "l2sp_penalises_head",
        {"l2_sp_penalty": swap(L2SP, "        if not name.startswith(head_prefix)\n", "")},
        loses={"test_l2_sp_penalty", "test_l2_sp_penalty_hidden"},
    ),
    WrongAnswer(  # walks the state_dict, so BatchNorm running statistics are pulled back too
        "l2sp_penalises_buffers",
        {"l2_sp_penalty": (
            "def l2_sp_penalty(model, pretrained, alpha, head_prefix=\"classifier.\"):\n"
            "    return alpha / 2 * sum(\n"
            "        (value - pretrained[name]).pow(2).sum()\n"
            "        for name, value in model.state_dict(keep_vars=True).items()\n"
            "        if not name.startswith(head_prefix)\n"
            "    )\n"
        )},
        loses={"test_l2_sp_penalty_hidden"},
    ),
    WrongAnswer(  # ignores head_prefix and skips the visible test's head name: the hidden model's head is "head."
        "l2sp_hardcodes_classifier",
        {"l2_sp_penalty": swap(L2SP, "name.startswith(head_prefix)", 'name.startswith("classifier.")')},
        loses={"test_l2_sp_penalty_hidden"},
    ),
    WrongAnswer(  # correct, written differently: walks `pretrained`, keeping the names that are parameters
        "l2sp_walks_pretrained",
        {"l2_sp_penalty": (
            "def l2_sp_penalty(model, pretrained, alpha, head_prefix=\"classifier.\"):\n"
            "    params = dict(model.named_parameters())\n"
            "    total = 0.0\n"
            "    for name, start in pretrained.items():\n"
            "        if name in params and not name.startswith(head_prefix):\n"
            "            total = total + ((params[name] - start) ** 2).sum()\n"
            "    return alpha / 2 * total\n"
        )},
        loses=set(),
    ),
    WrongAnswer(  # forgets the eps / C that the smoothed target puts on every class
        "ls_forgets_uniform_mass",
        {"label_smoothing_grad": swap(LS, "(1 - eps) * onehot + eps / num_classes", "(1 - eps) * onehot")},
        loses={"test_label_smoothing_grad", "test_label_smoothing_grad_hidden"},
    ),
    WrongAnswer(  # the other convention: eps spread over the C - 1 wrong classes only, not PyTorch's
        "ls_eps_over_c_minus_1",
        {"label_smoothing_grad": swap(
            LS, "(1 - eps) * onehot + eps / num_classes",
            "(1 - eps) * onehot + eps / (num_classes - 1) * (1 - onehot)")},
        loses={"test_label_smoothing_grad", "test_label_smoothing_grad_hidden"},
    ),
    WrongAnswer(  # the gradient of the unsmoothed loss, (b)'s answer
        "ls_unsmoothed_gradient",
        {"label_smoothing_grad": swap(LS, "(probs - target) / n", "(probs - onehot) / n")},
        loses={"test_label_smoothing_grad", "test_label_smoothing_grad_hidden"},
    ),
    WrongAnswer(  # forgets that the uniform term eps * mean_c(-log p_c) depends on the logits too;
        # at uniform logits (the visible test) that term's gradient is zero, so only the hidden test sees it
        "ls_scaled_unsmoothed_gradient",
        {"label_smoothing_grad": swap(LS, "(probs - target) / n", "(1 - eps) * (probs - onehot) / n")},
        loses={"test_label_smoothing_grad_hidden"},
    ),
    WrongAnswer(  # the gradient of the summed loss, while the loss is the mean; the visible test has N = 1
        "ls_not_divided_by_batch",
        {"label_smoothing_grad": swap(LS, "(probs - target) / n", "probs - target")},
        loses={"test_label_smoothing_grad_hidden"},
    ),
    WrongAnswer(  # exp overflows for large logits: right on small inputs only
        "ls_without_max_shift",
        {"label_smoothing_grad": swap(LS, "(logits - logits.max(dim=1, keepdim=True).values).exp()", "logits.exp()")},
        loses={"test_label_smoothing_grad_hidden"},
    ),
    WrongAnswer(  # lets autograd differentiate PyTorch's own smoothed loss: the hidden test makes it raise
        "ls_autograd_of_library_loss",
        {"label_smoothing_grad": LS_DEF + (
            "    z = logits.detach().clone().requires_grad_()\n"
            "    F.cross_entropy(z, labels, label_smoothing=eps).backward()\n"
            "    return z.grad\n")},
        loses={"test_label_smoothing_grad_hidden"},
    ),
    WrongAnswer(  # a hand-written smoothed loss, differentiated by torch.autograd.backward
        "ls_autograd_of_own_loss",
        {"label_smoothing_grad": LS_DEF + (
            "    z = logits.detach().clone().requires_grad_()\n"
            "    shifted = z - z.max(dim=1, keepdim=True).values\n"
            "    log_probs = shifted - shifted.exp().sum(dim=1, keepdim=True).log()\n"
            "    onehot = torch.zeros_like(z).scatter(1, labels[:, None], 1.0)\n"
            "    target = (1 - eps) * onehot + eps / z.shape[1]\n"
            "    torch.autograd.backward(-(target * log_probs).sum(dim=1).mean(), inputs=[z])\n"
            "    return z.grad\n")},
        loses={"test_label_smoothing_grad_hidden"},
    ),
    WrongAnswer(  # the same smoothed loss, differentiated in forward mode (torch.func.jacfwd)
        "ls_forward_mode_jacfwd",
        {"label_smoothing_grad": LS_DEF + (
            "    def loss(z):\n"
            "        shifted = z - z.max(dim=1, keepdim=True).values\n"
            "        log_probs = shifted - shifted.exp().sum(dim=1, keepdim=True).log()\n"
            "        onehot = torch.zeros_like(z).scatter(1, labels[:, None], 1.0)\n"
            "        target = (1 - eps) * onehot + eps / z.shape[1]\n"
            "        return -(target * log_probs).sum(dim=1).mean()\n"
            "    return torch.func.jacfwd(loss)(logits)\n")},
        loses={"test_label_smoothing_grad_hidden"},
    ),
    WrongAnswer(  # the softmax by a forbidden spelling
        "ls_probs_from_log_softmax",
        {"label_smoothing_grad": swap(
            LS, "exp = (logits - logits.max(dim=1, keepdim=True).values).exp()\n"
                "    probs = exp / exp.sum(dim=1, keepdim=True)\n",
            "probs = logits.log_softmax(dim=1).exp()\n")},
        loses={"test_label_smoothing_grad_hidden"},
    ),
    WrongAnswer(  # correct, written differently: (b)'s gradient plus the shift of the target,
        # p - q = (p - onehot) + eps * (onehot - 1/C). It calls cross_entropy_grad, so it also names
        # (b)'s model answer, which keeps it out of a bundle with a wrong answer to (b).
        "ls_reuses_cross_entropy_grad",
        {"cross_entropy_grad": GRAD,
         "label_smoothing_grad": LS_DEF + (
             "    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)\n"
             "    return cross_entropy_grad(logits, labels) + eps * (onehot - 1 / logits.shape[1]) / len(logits)\n")},
        loses=set(),
    ),
    WrongAnswer(  # correct, written differently: a stable softmax through logsumexp (allowed here),
        # the smoothed loss as a mixture, (1 - eps) * (p - onehot) + eps * (p - 1/C)
        "ls_logsumexp_mixture",
        {"label_smoothing_grad": LS_DEF + (
            "    probs = (logits - torch.logsumexp(logits, dim=1, keepdim=True)).exp()\n"
            "    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)\n"
            "    uniform = torch.full_like(logits, 1 / logits.shape[1])\n"
            "    return ((1 - eps) * (probs - onehot) + eps * (probs - uniform)) / logits.shape[0]\n")},
        loses=set(),
    ),
]
