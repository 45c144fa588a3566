/* The built-in classes, each defined in its own area's file and listed once
 * in builtins.c. The registry reads that table; no area registers itself and
 * the registry calls into none of them.
 *
 * Adding a built-in class (a dataset, metric, callback, logger...): define
 * `const fg_class fg__<name>_class` in its file, declare it here, and add it
 * to the table in builtins.c. */
#ifndef FG_REGISTRY_BUILTINS_H
#define FG_REGISTRY_BUILTINS_H

#include <stddef.h>

#include "fulgur/registry.h"

/* data/ */
extern const fg_class fg__datamodule_class;
extern const fg_class fg__idx_dataset_class;
extern const fg_class fg__csv_dataset_class;
extern const fg_class fg__synthetic_dataset_class;
extern const fg_class fg__tensordict_dataset_class;
/* module/: models, then LightningModules */
extern const fg_class fg__mlp_class;
extern const fg_class fg__torchscript_class;
extern const fg_class fg__lightning_module_class;
extern const fg_class fg__classification_module_class;
/* metrics/ */
extern const fg_class fg__accuracy_class;
extern const fg_class fg__mean_metric_class;
extern const fg_class fg__precision_class;
extern const fg_class fg__recall_class;
extern const fg_class fg__f1_class;
extern const fg_class fg__confusion_matrix_class;
extern const fg_class fg__auroc_class;
extern const fg_class fg__average_precision_class;
extern const fg_class fg__stat_scores_class;
extern const fg_class fg__classwise_wrapper_class;
extern const fg_class fg__mse_class;
extern const fg_class fg__mae_class;
extern const fg_class fg__metric_collection_class;
/* trainer/: callbacks and loggers */
extern const fg_class fg__model_checkpoint_class;
extern const fg_class fg__model_checkpoint_link_best_class;
extern const fg_class fg__csv_logger_class;
extern const fg_class fg__tb_logger_class;
extern const fg_class fg__lr_monitor_class;
extern const fg_class fg__early_stopping_class;
extern const fg_class fg__model_summary_class;
extern const fg_class fg__rich_model_summary_class;
extern const fg_class fg__rich_progress_bar_class;
extern const fg_class fg__lt_rich_progress_bar_class;
extern const fg_class fg__tqdm_progress_bar_class;
extern const fg_class fg__set_precision_and_cudnn_class;
extern const fg_class fg__set_wandb_logger_class;
extern const fg_class fg__custom_repr_class;
extern const fg_class fg__set_sharing_strategy_class;
extern const fg_class fg__save_and_log_config_class;
/* optim/ */
extern const fg_class fg__sgd_class;
extern const fg_class fg__adam_class;
extern const fg_class fg__adamw_class;
extern const fg_class fg__step_lr_class;
extern const fg_class fg__multistep_lr_class;
extern const fg_class fg__exponential_lr_class;
extern const fg_class fg__cosine_lr_class;
extern const fg_class fg__linear_lr_class;
extern const fg_class fg__constant_lr_class;
extern const fg_class fg__plateau_lr_class;
extern const fg_class fg__onecycle_lr_class;
extern const fg_class fg__warmup_class;

/* Every built-in, in registration order (the order "known: ..." lists in
 * an unknown-class error). */
extern const fg_class *const fg__builtin_classes[];
extern const size_t fg__n_builtin_classes;

#endif
