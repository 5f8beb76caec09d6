"""Plausible wrong answers to ps8_lora, and the autograded test cells each must lose.

Per part, mistakes the visible test already catches and mistakes only the hidden test catches
(so the hidden tests are shown to be needed), the shortcut the hidden tests refuse (peft's own
LoRA layer under the asked-for names), and correct answers written differently, which must keep
every point. Part (c) calls the student's `add_lora` and `LoRALinear`, so a mistake in (a) or (b)
that changes what the wrapped encoder computes or trains also costs (c): its hidden test checks
the model against the packaged encoder with the merged weights, the pretrained weights unchanged,
and a trained LoRALinear in every query and value.

Part (c), measured (tlutils at this commit, one thread): accuracy in % on the visible test's 300
reviews of held-back training movies (seed 0), and on the hidden test's 400 reviews of the test
split's movies for its draws 1 and 2 of 256 reviews per class, each also with its labels swapped
(the hidden test uses draw 1 as drawn and draw 2 swapped):

    answer                                      visible   draw 1  swapped   draw 2  swapped
    solution (r 8, LoRA 1e-3, head 1e-2)           69.7     74.5     76.0     72.3     72.5
    own_training_loop (correct)                    69.0     73.8     71.0     70.5     71.5
    head_only                                      65.7     71.5     70.5     66.8     66.8
    b_random_too, with the solution's (c)          70.7     69.7     70.2     70.5     70.0
    learns_from_the_pool                           69.0     75.7     56.5     75.0     47.0
    learning_rate_too_high                         50.0     50.0     50.0     50.0     50.0
    forgets_to_freeze (every weight trains)        53.3     (fails the weights check first)
    not declared: one rate of 3e-3 for both          -      76.0     59.8     72.5     69.5
    not declared: A from a standard normal      51.7-54.7  59.2-73.0  50.0    76.5     60.0

Over eight draws, each also swapped, the solution scored 68.8 to 76.0 (mean 72.8) and the head
alone 66.8 to 71.7 (mean 69.7; LoRA ahead in 15 of the 16 pairs). The threshold, 65% on each
hidden draw (63% in the visible test, whose six seeds gave 64.0 to 72.7), sits 3.8 points below
the solution's worst run and far above what wrecks the encoder (a learning rate far too high, or
every weight fine-tuned at LoRA's rates, ends near 50%), but below the head alone: accuracy cannot
tell LoRA from no LoRA at this budget, the hidden test's checks of the model do (head_only). A
standard-normal A (16 times kaiming's spread) trains chaotically: its accuracies changed between
two runs of the same code, so it is not declared; a_zero_too is the initialisation mistake
declared instead.
"""
from grading import WrongAnswer, solution_source, swap

LORA = solution_source("ps8_lora", "lora_linear")
ADD = solution_source("ps8_lora", "add_lora")
TRAIN = solution_source("ps8_lora", "train_lora_classifier")

FREEZE_BASE = "        self.base.requires_grad_(False)             # weight and bias: frozen\n"
B_ZERO = "        self.B = nn.Parameter(torch.zeros(base.out_features, r, dtype=weight.dtype, device=weight.device))\n"
A_INIT = "        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))   # as nn.Linear's weight, and as peft\n"
FORWARD = "        return self.base(x) + self.scaling * ((x @ self.A.T) @ self.B.T)\n"
MERGE_BODY = (
    "        base = self.base\n"
    "        merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,\n"
    "                           dtype=base.weight.dtype, device=base.weight.device)\n"
    "        with torch.no_grad():\n"
    "            merged.weight.copy_(base.weight + self.scaling * (self.B @ self.A))\n"
    "            if base.bias is not None:\n"
    "                merged.bias.copy_(base.bias)\n"
    "        return merged\n"
)
WRAP = ("        attention.query = LoRALinear(attention.query, r, alpha)\n"
        "        attention.value = LoRALinear(attention.value, r, alpha)\n")
COUNT = "    return sum(p.numel() for p in encoder.parameters() if p.requires_grad)\n"
ADD_LORA_CALL = "    add_lora(encoder, r=8, alpha=16)\n"

# The correct answers written differently come first: grading.bundles packs them into one
# submission, which must keep every point. Packed beside a mistake in another part, one of
# them could not show that it keeps its points, since a mistake in (a) or (b) also costs (c).
CORRECT_ALTERNATIVES = [
    WrongAnswer(  # a correct answer written differently: the merged weight in every forward pass,
        "forward_with_merged_weight",  # F.linear, and merge() as a copy of the base layer
        {"lora_linear": (
            "import copy\n"
            "\n"
            "import torch.nn.functional as F\n"
            "\n"
            "\n"
            "class LoRALinear(nn.Module):\n"
            "    def __init__(self, base, r, alpha):\n"
            "        super().__init__()\n"
            "        self.base = base\n"
            "        for p in base.parameters():\n"
            "            p.requires_grad = False\n"
            "        self.A = nn.Parameter(base.weight.new_empty(r, base.in_features))\n"
            "        self.B = nn.Parameter(base.weight.new_zeros(base.out_features, r))\n"
            "        bound = 1 / math.sqrt(base.in_features)   # what kaiming_uniform_ with a = sqrt(5) gives\n"
            "        with torch.no_grad():\n"
            "            self.A.uniform_(-bound, bound)\n"
            "        self.scaling = float(alpha) / r\n"
            "\n"
            "    def delta(self):\n"
            "        return self.scaling * torch.einsum('or,ri->oi', self.B, self.A)\n"
            "\n"
            "    def forward(self, x):\n"
            "        return F.linear(x, self.base.weight + self.delta(), self.base.bias)\n"
            "\n"
            "    def merge(self):\n"
            "        merged = copy.deepcopy(self.base)\n"
            "        with torch.no_grad():\n"
            "            merged.weight += self.delta()\n"
            "        return merged\n"
        )},
        loses=set(),
    ),
    WrongAnswer(  # a correct answer written differently: the layers found by name, set on their parent
        "by_module_names",
        {"add_lora": (
            "def add_lora(encoder, r, alpha):\n"
            "    for p in encoder.parameters():\n"
            "        p.requires_grad = False\n"
            "    targets = [name for name, _ in encoder.named_modules()\n"
            "               if name.endswith(('attention.self.query', 'attention.self.value'))]\n"
            "    for name in targets:\n"
            "        parent_name, _, child = name.rpartition('.')\n"
            "        parent = encoder.get_submodule(parent_name)\n"
            "        setattr(parent, child, LoRALinear(getattr(parent, child), r=r, alpha=alpha))\n"
            "    added = [m for m in encoder.modules() if isinstance(m, LoRALinear)]\n"
            "    return int(sum(m.A.numel() + m.B.numel() for m in added))\n"
        )},
        loses=set(),
    ),
    WrongAnswer(  # a correct answer written differently: rank 4, reviews cut at 32 tokens, a loop
        "own_training_loop",  # of its own with a constant learning rate per group
        {"train_lora_classifier": (
            "def train_lora_classifier(train, seed=0):\n"
            "    tlutils.set_seed(seed)\n"
            "    tokenizer, encoder = tlutils.text.load_encoder()\n"
            "    add_lora(encoder, r=4, alpha=8)\n"
            "    model = tlutils.text.TextClassifier(encoder, num_classes=2)\n"
            "    ids = tlutils.text.tokenize(tokenizer, train.texts, max_length=32)\n"
            "    loader = tlutils.text.TokenLoader(ids, train.labels, batch_size=16, shuffle=True, seed=seed)\n"
            "    lora = [p for name, p in model.encoder.named_parameters() if p.requires_grad]\n"
            "    optimizer = torch.optim.AdamW([{'params': lora, 'lr': 1e-3},\n"
            "                                   {'params': model.head.parameters(), 'lr': 1e-2}], weight_decay=0.0)\n"
            "    model.train()\n"
            "    steps = 0\n"
            "    while steps < 40:\n"
            "        for x, y in loader:\n"
            "            loss = nn.functional.cross_entropy(model(x), y)\n"
            "            optimizer.zero_grad()\n"
            "            loss.backward()\n"
            "            optimizer.step()\n"
            "            steps += 1\n"
            "            if steps == 40:\n"
            "                break\n"
            "    return model.eval()\n"
        )},
        loses=set(),
    ),
]

MISTAKES = [
    # -- (a) LoRALinear --------------------------------------------------------------------
    WrongAnswer(  # only the weight frozen: the base layer's bias still trains
        "base_bias_trains",
        {"lora_linear": swap(LORA, FREEZE_BASE, "        self.base.weight.requires_grad_(False)\n")},
        loses={"test_lora_linear", "test_lora_linear_hidden"},
    ),
    WrongAnswer(  # B random like A: the wrapped layer no longer starts as the pretrained one
        "b_random_too",
        {"lora_linear": swap(LORA, B_ZERO,
                             B_ZERO + "        nn.init.kaiming_uniform_(self.B, a=math.sqrt(5))\n")},
        loses={"test_lora_linear", "test_lora_linear_hidden", "test_add_lora", "test_add_lora_hidden"},
    ),
    WrongAnswer(  # the scaling stored but never applied: right while B is zero, wrong after
        "forgets_scaling",
        {"lora_linear": swap(LORA, FORWARD, "        return self.base(x) + (x @ self.A.T) @ self.B.T\n")},
        loses={"test_lora_linear_hidden", "test_add_lora_hidden", "test_train_lora_classifier_hidden"},
    ),
    WrongAnswer(  # A at zero as well as B: B A = 0 as asked, but neither A nor B ever gets a
        "a_zero_too",  # gradient, so LoRA never trains and (c) trains the head alone
        {"lora_linear": swap(LORA, A_INIT, "        nn.init.zeros_(self.A)\n")},
        loses={"test_lora_linear_hidden", "test_add_lora_hidden", "test_train_lora_classifier_hidden"},
    ),
    WrongAnswer(  # merges into the base layer itself: the LoRA layer then counts B A twice
        "merges_in_place",
        {"lora_linear": swap(LORA, MERGE_BODY,
                             "        with torch.no_grad():\n"
                             "            self.base.weight += self.scaling * (self.B @ self.A)\n"
                             "        return self.base\n")},
        loses={"test_lora_linear_hidden"},
    ),
    WrongAnswer(  # the shortcut the hidden tests refuse: peft's own LoRA layer inside, its A and B
        "wraps_peft_layer",  # shown under the asked-for names
        {"lora_linear": (
            "import peft\n"
            "import peft.tuners.lora.layer as peft_lora\n"
            "\n"
            "\n"
            "class LoRALinear(nn.Module):\n"
            "    def __init__(self, base, r, alpha):\n"
            "        super().__init__()\n"
            "        base.requires_grad_(False)\n"
            "        config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0)\n"
            '        self.lora = peft_lora.Linear(base, "default", config=config, r=r, lora_alpha=alpha)\n'
            "        self.base = base\n"
            '        self.A = self.lora.lora_A["default"].weight\n'
            '        self.B = self.lora.lora_B["default"].weight\n'
            "        self.scaling = alpha / r\n"
            "\n"
            "    def forward(self, x):\n"
            "        return self.lora(x)\n"
            "\n"
            "    def merge(self):\n"
            + MERGE_BODY
        )},
        loses={"test_lora_linear_hidden", "test_add_lora_hidden", "test_train_lora_classifier_hidden"},
    ),
    # -- (b) add_lora ----------------------------------------------------------------------
    WrongAnswer(  # the query and key projections instead of the query and value
        "query_and_key",
        {"add_lora": swap(ADD, WRAP, "        attention.query = LoRALinear(attention.query, r, alpha)\n"
                                     "        attention.key = LoRALinear(attention.key, r, alpha)\n")},
        loses={"test_add_lora", "test_add_lora_hidden", "test_train_lora_classifier_hidden"},
    ),
    WrongAnswer(  # the count for r = 8 written in
        "hard_coded_count",
        {"add_lora": swap(ADD, COUNT, "    return 73_728\n")},
        loses={"test_add_lora_hidden"},
    ),
    WrongAnswer(  # wraps, and counts what it added, but never freezes the rest of the encoder:
        "forgets_to_freeze",  # part (c) then fine-tunes every weight, at rates that wreck them
        {"add_lora": swap(swap(ADD, "    encoder.requires_grad_(False)\n", ""), COUNT,
                          "    return 12 * r * (384 + 384)\n")},
        loses={"test_add_lora_hidden", "test_train_lora_classifier", "test_train_lora_classifier_hidden"},
    ),
    # -- (c) train_lora_classifier ---------------------------------------------------------
    WrongAnswer(  # forgets add_lora: the head alone on the frozen encoder scores only a few points
        "head_only",  # less, so only the hidden test's checks of the model catch it
        {"train_lora_classifier": swap(TRAIN, ADD_LORA_CALL, "    encoder.requires_grad_(False)\n")},
        loses={"test_train_lora_classifier_hidden"},
    ),
    WrongAnswer(  # more labels than it was given: 256 more reviews per class from the training split
        "learns_from_the_pool",
        {"train_lora_classifier": swap(
            TRAIN, "    ids = tlutils.text.tokenize(tokenizer, train.texts)\n",
            "    pool, _ = tlutils.text.split_by_group(tlutils.text.load_reviews())\n"
            "    train = tlutils.text.concat(train, tlutils.text.few_shot_texts(pool, 256, seed=seed + 1))\n"
            "    ids = tlutils.text.tokenize(tokenizer, train.texts)\n")},
        loses={"test_train_lora_classifier_hidden"},
    ),
    WrongAnswer(  # the head's learning rate, and higher, for LoRA's matrices too: the pretrained
        "learning_rate_too_high",  # attention is wrecked
        {"train_lora_classifier": swap(TRAIN, "lr=1e-3, head_lr_mult=10", "lr=3e-2, head_lr_mult=1")},
        loses={"test_train_lora_classifier", "test_train_lora_classifier_hidden"},
    ),
]

WRONG_ANSWERS = CORRECT_ALTERNATIVES + MISTAKES
