"""Data-parallel training parity: torch DistributedDataParallel against JAX sharding.

- `compare.train_data_parallel`: one config trained single-device and data-parallel in both
  frameworks, compared three ways (DDP vs one device, sharded JAX vs one device, sharded JAX vs
  DDP) by the teacher-forced curve rule of `parity.curves`; `compare.batchnorm_case`: the model
  whose data-parallel step depends on where BatchNorm takes its statistics.
- `launch`: the worker processes (torch ranks started as torchrun starts them; one JAX process
  with N devices) and the guarantees that every one of them ends.
- `sides`: the DDP rank and the sharded JAX step as `parity.training` sides.
- `experiments`: the traps (docs/traps.md, traps 30-34), each a function run on every rank.
- `timing`: the data-parallel step timing behind `parity bench dp...`.

The `parity train --data-parallel N` command drives `compare`; docs/traps.md, traps 30-34, say what
differs between the engines and why.
"""
