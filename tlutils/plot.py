"""The course's figures: training curves, confusion matrices, image grids, data-efficiency curves
and 2-D embeddings; and `html_table` for the small tables of numbers beside them.

Every function draws with matplotlib and returns the Axes or Figure it drew on; none calls
`plt.show()`, so a notebook shows the figure once (write `_ = plot_...(...)` to hide the return
value) and a test can inspect what was drawn. Functions that fill a single Axes take `ax=` so they
compose into subplots.
"""
from __future__ import annotations

import html
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator, NullLocator


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _axes(ax, figsize=(5, 4)):
    return ax if ax is not None else plt.subplots(figsize=figsize, layout="constrained")[1]


def plot_history(history, axes=None):
    """Loss (left) and accuracy (right) per epoch, training and, when recorded, validation.

    history: a dict with lists "epoch", "train_loss", "train_acc" and optionally "val_loss" and
        "val_acc" (missing or empty when there was no validation set), or any object whose
        `as_dict()` returns such a dict (like the history that `tlutils.train.fit` returns).

    axes: a pair of Axes to draw on; a new 1x2 figure by default.

    Returns the Figure.
    """
    if hasattr(history, "as_dict"):
        history = history.as_dict()
    missing = [key for key in ("epoch", "train_loss", "train_acc") if key not in history]
    if missing:
        raise ValueError(f"history has no {missing}; expected 'epoch', 'train_loss', 'train_acc'")
    epochs = list(history["epoch"])
    if not epochs:
        raise ValueError("history is empty: no epochs recorded")
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")[1]
    for ax, metric in zip(axes, ("loss", "acc")):
        for split in ("train", "val"):
            values = list(history.get(f"{split}_{metric}", []))
            if not values:
                continue
            if len(values) != len(epochs):
                raise ValueError(f"history['{split}_{metric}'] has {len(values)} values "
                                 f"for {len(epochs)} epochs")
            ax.plot(epochs, values, marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss" if metric == "loss" else "accuracy")
        ax.legend()
    return axes[0].figure


def plot_confusion_matrix(cm, class_names=None, normalize: bool = False, ax=None):
    """The confusion matrix as an image, each cell annotated with its count.

    Rows are true classes and columns predicted ones (the layout of `tlutils.metrics.
    confusion_matrix`). With `normalize=True` each row is divided by its total, so the diagonal
    shows each class's recall and rare classes are as visible as common ones.
    Returns the Axes.
    """
    cm = _numpy(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.size == 0:
        raise ValueError(f"cm must be a non-empty square matrix, got shape {cm.shape}")
    if (cm < 0).any():
        raise ValueError("cm holds negative counts")
    n = cm.shape[0]
    names = [str(i) for i in range(n)] if class_names is None else [str(c) for c in class_names]
    if len(names) != n:
        raise ValueError(f"{len(names)} class_names for a {n}x{n} matrix")
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals != 0)
    ax = _axes(ax, figsize=(0.5 * n + 2, 0.5 * n + 1.5))
    ax.imshow(cm, cmap="Blues", vmin=0)
    threshold = cm.max() / 2   # dark cells get white text
    for (i, j), value in np.ndenumerate(cm):
        ax.text(j, i, f"{value:.2f}" if normalize else f"{value:g}", ha="center", va="center",
                fontsize=8, color="white" if value > threshold else "black")
    ax.set(xticks=range(n), yticks=range(n), xticklabels=names, yticklabels=names,
           xlabel="predicted label", ylabel="true label")
    return ax


def show_images(images, labels=None, ncols: int = 8, title=None, cmap: str = "gray"):
    """A grid of images from an (N, H, W), (N, 1, H, W) or (N, 3, H, W) tensor or array.

    Each image is scaled to its own range (so normalised inputs display fine); `labels`, one per
    image, become the titles. Returns the Figure.
    """
    images = _numpy(images).astype(float)
    if images.ndim == 4 and images.shape[1] in (1, 3):
        images = images.transpose(0, 2, 3, 1)            # channels last, as matplotlib wants
        if images.shape[-1] == 1:
            images = images[..., 0]
    elif images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), (N, 1, H, W) or (N, 3, H, W), "
                         f"got {images.shape}")
    if len(images) == 0:
        raise ValueError("no images to show")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    labels = None if labels is None else _numpy(labels).tolist()
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols, 1.3 * nrows + 0.3 * bool(title)),
                             squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= len(images):
            fig.delaxes(ax)
            continue
        low, high = images[i].min(), images[i].max()
        ax.imshow((images[i] - low) / (high - low or 1), cmap=cmap, vmin=0, vmax=1)
        ax.set_axis_off()
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=9)
    if title is not None:
        fig.suptitle(title)
    return fig


def plot_data_efficiency(results, ax=None, band: str = "minmax"):
    """Target accuracy against the number of labels per class, one curve per method.

    results: {method: {k: [accuracy of each seed]}}, k the labels per class.
    band: "minmax" shades between the worst and best seed, "std" shades mean +- one std.
    The x axis is logarithmic with the k values as ticks, since the interesting part is small k.
    Returns the Axes.
    """
    if not results:
        raise ValueError("results is empty: expected {method: {labels per class: [accuracies]}}")
    if band not in ("minmax", "std"):
        raise ValueError(f"unknown band {band!r}; use 'minmax' or 'std'")
    ax = _axes(ax, figsize=(6, 4))
    all_ks = set()
    for method, by_k in results.items():
        if not by_k or any(len(accs) == 0 for accs in by_k.values()):
            raise ValueError(f"results[{method!r}] has no accuracies for some k")
        if min(by_k) < 1:
            raise ValueError(f"labels per class must be at least 1, got {min(by_k)} for {method!r}")
        ks = sorted(by_k)
        accs = [np.asarray(by_k[k], dtype=float) for k in ks]
        mean = np.array([a.mean() for a in accs])
        if band == "minmax":
            low, high = [a.min() for a in accs], [a.max() for a in accs]
        else:
            std = np.array([a.std() for a in accs])
            low, high = mean - std, mean + std
        line, = ax.plot(ks, mean, marker="o", label=str(method))
        ax.fill_between(ks, low, high, color=line.get_color(), alpha=0.2)
        all_ks.update(ks)
    ax.set_xscale("log")
    ticks = sorted(all_ks)
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.xaxis.set_minor_locator(NullLocator())   # log scale adds unlabelled minor ticks otherwise
    ax.set(xlabel="labels per class", ylabel="target test accuracy")
    ax.legend()
    return ax


def plot_embedding_2d(features, labels, ax=None, title=None):
    """A scatter plot of features coloured by label, one colour (and legend entry) per class.

    features: (N, 2) is drawn as is; (N, D) with D > 2 is first projected onto its first two
    principal components (sklearn's PCA), the straightest 2-D view of the data.
    Returns the Axes.
    """
    features, labels = _numpy(features), _numpy(labels)
    if features.ndim != 2 or features.shape[1] < 2 or len(features) == 0:
        raise ValueError(f"features must have shape (N, D) with N >= 1 and D >= 2, got {features.shape}")
    if labels.shape != (len(features),):
        raise ValueError(f"labels must have shape ({len(features)},), got {labels.shape}")
    axis_name = "dimension"
    if features.shape[1] > 2:
        from sklearn.decomposition import PCA

        features = PCA(n_components=2, random_state=0).fit_transform(features)
        axis_name = "principal component"
    ax = _axes(ax, figsize=(6, 5))
    for label in np.unique(labels):
        points = features[labels == label]
        ax.scatter(points[:, 0], points[:, 1], s=10, alpha=0.7, label=str(label))
    ax.set(xlabel=f"{axis_name} 1", ylabel=f"{axis_name} 2")
    ax.legend(markerscale=1.5, fontsize=8, title="label", loc="center left", bbox_to_anchor=(1, 0.5))
    if title is not None:
        ax.set_title(title)
    return ax


def html_table(header, rows):
    """A small right-aligned HTML table (IPython's `HTML`), the same in JupyterLab and the book.

    header: the column titles; rows: sequences of cells, each as long as the header. Cells are
    shown with `str` and escaped, so format numbers before passing them.
    """
    from IPython.display import HTML

    rows = [list(row) for row in rows]
    bad = [i for i, row in enumerate(rows) if len(row) != len(header)]
    if bad:
        raise ValueError(f"rows {bad} do not have {len(header)} cells like the header")
    cell = lambda tag, x: f"<{tag} style='text-align:right'>{html.escape(str(x))}</{tag}>"  # noqa: E731
    head = "".join(cell("th", h) for h in header)
    body = "".join("<tr>" + "".join(cell("td", x) for x in row) + "</tr>" for row in rows)
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
