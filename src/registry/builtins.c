/* The table of built-in classes (builtins.h says how to add one). */
#include "registry/builtins.h"

const fg_class *const fg__builtin_classes[] = {
    &fg__datamodule_class,
    &fg__idx_dataset_class,
    &fg__csv_dataset_class,
    &fg__synthetic_dataset_class,
    &fg__tensordict_dataset_class,

    &fg__mlp_class,
    &fg__torchscript_class,
    &fg__lightning_module_class,
    &fg__classification_module_class,

    &fg__accuracy_class,
    &fg__mean_metric_class,
    &fg__precision_class,
    &fg__recall_class,
    &fg__f1_class,
    &fg__confusion_matrix_class,
    &fg__auroc_class,
    &fg__average_precision_class,
    &fg__stat_scores_class,
    &fg__classwise_wrapper_class,
    &fg__mse_class,
    &fg__mae_class,
    &fg__metric_collection_class,

    &fg__model_checkpoint_class,
    &fg__model_checkpoint_link_best_class,
    &fg__csv_logger_class,
    &fg__tb_logger_class,
    &fg__lr_monitor_class,
    &fg__early_stopping_class,
    &fg__model_summary_class,
    &fg__rich_model_summary_class,

    &fg__sgd_class,
    &fg__adam_class,
    &fg__adamw_class,
    &fg__step_lr_class,
    &fg__multistep_lr_class,
    &fg__exponential_lr_class,
    &fg__cosine_lr_class,
    &fg__linear_lr_class,
    &fg__constant_lr_class,
    &fg__plateau_lr_class,
    &fg__onecycle_lr_class,
    &fg__warmup_class,
};

const size_t fg__n_builtin_classes = sizeof fg__builtin_classes / sizeof fg__builtin_classes[0];
