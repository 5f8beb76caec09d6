"""Plausible wrong answers to ps2_loss, and the autograded test cells each must lose.

Per part, one mistake the visible test already catches and one only the hidden test catches
(so the hidden tests are shown to be needed), plus a correct answer that emits a harmless warning
(it must keep every point: nbgrader_config.py filters warnings out of stderr).
"""
from grading import WrongAnswer, solution_source, swap

CE = solution_source("ps2_loss", "cross_entropy")
GRAD = solution_source("ps2_loss", "cross_entropy_grad")
BCE = solution_source("ps2_loss", "bce_with_logits_grad")
L2SP = solution_source("ps2_loss", "l2_sp_penalty")

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
]
