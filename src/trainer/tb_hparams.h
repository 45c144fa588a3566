/* The hparams plugin's summaries for TensorBoardLogger (tb_hparams.c). */
#ifndef FG_TRAINER_TB_HPARAMS_H
#define FG_TRAINER_TB_HPARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "fulgur/config.h"

typedef struct {
  uint8_t *data; /* malloc'd */
  size_t len;
} fg_tb_blob;

/* In Lightning's order of writing them. */
enum { FG_TB_HP_EXPERIMENT = 0, FG_TB_HP_SESSION_START, FG_TB_HP_SESSION_END };

/* The packed HParamsPluginData of the experiment, the session start info
 * and the session end info (status success) for the hyperparameters params
 * (a map, flattened as Lightning does) and one metric tag. Each out[i].data
 * is the caller's to free. Cannot fail (allocation failure aborts). */
void fg__tb_hparams_pack(const fg_node *params, const char *metric, fg_tb_blob out[3]);

#endif
