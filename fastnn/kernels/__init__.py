"""Compiled Numba kernels (no classes, no validation, no allocation)."""

from . import _blas_preload, _cache_guard

_cache_guard.check()    # before any cached kernel is loaded
_blas_preload.preload()  # before Numba's first kernel imports it with all of scipy.linalg

from .activations import activation_backward, activation_forward
from .chunked import (
    batch_plan,
    chunk_step,
    chunk_sums,
    chunks_parallel,
    chunks_total,
    train_chunked,
    train_workers,
    update_block,
    update_range,
    updates_parallel,
    worker_batches,
    workers_loss,
    workers_record,
)
from .colsplit import (
    first_forward,
    first_update,
    first_updates_parallel,
    firsts_parallel,
    train_colsplit,
    train_colsplit_workers,
    upper_chunk,
    uppers_parallel,
    worker_colsplit,
)
from .dense import dense_backward, dense_forward
from .fullbatch import fullbatch_group, fullbatch_loss_grad, groups_parallel
from .losses import loss_grad, loss_grad_part
from .network import (
    gather_batch,
    network_backward,
    network_forward,
    predict_rows,
    train_batches,
)
from .norm import batchnorm_backward, batchnorm_forward, dropout_apply, dropout_mask
from .optimizers import add_l2, batch_l2, flush_subnormal, l2_penalty, optimizer_update
from .reduce import exponent_max, narrow_finite
from .sync import barrier, check_in

# every kernel, for the test that each compiles to at most one signature per dtype
KERNELS = (activation_forward, activation_backward, dense_forward, dense_backward,
           loss_grad, network_forward, network_backward, train_batches, predict_rows,
           batchnorm_forward, batchnorm_backward, dropout_mask, dropout_apply,
           optimizer_update, add_l2, fullbatch_loss_grad, loss_grad_part, chunk_step,
           update_block, train_chunked, l2_penalty, fullbatch_group, batch_l2,
           chunks_parallel, updates_parallel, groups_parallel, flush_subnormal,
           gather_batch, exponent_max, train_colsplit, first_forward, upper_chunk,
           first_update, firsts_parallel, uppers_parallel, first_updates_parallel,
           chunks_total, update_range, chunk_sums, train_workers, worker_batches,
           check_in, barrier, train_colsplit_workers, worker_colsplit,
           workers_loss, workers_record, batch_plan, narrow_finite)
