"""Which process this is: rank, world size and device from `accelerate.PartialState`, which reads what
`accelerate launch`, `torchrun` (and MPI launchers) set, and is a single process under plain python."""

from dataclasses import dataclass
from datetime import timedelta

#: A finished rank waits at the final barrier for the slowest one (e.g. on a rerun where its shards
#: were already done); the 30-minute default of torch.distributed would kill long archive jobs.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass
class Ranks:
    rank: int
    world_size: int
    device: str  # this process's device ("cuda:1", "cpu")
    _state: object = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, unit: int) -> bool:
        """Work unit `unit` (a shard, a video) belongs to rank `unit % world_size`."""
        return unit % self.world_size == self.rank

    def barrier(self) -> None:
        if self.world_size > 1:
            self._state.wait_for_everyone()

    def gather(self, value) -> list:
        """Every rank's `value`, in rank order (a picklable object)."""
        if self.world_size == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def close(self) -> None:
        """Wait for every rank, then end the process group: a rank that exits while another still writes
        (the manifest) with its gloo threads alive was sometimes aborted at exit ("terminate called
        without an active exception", exit -6, about 1 run in 4 of the 2-process test)."""
        if self.world_size > 1:
            import torch.distributed as dist

            self._state.wait_for_everyone()
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available() or (
        hasattr(torch, "xpu") and torch.xpu.is_available())


def current_ranks(device=None) -> Ranks:
    """This process's `Ranks`. `device` None: the launcher's device for this rank (`cuda:LOCAL_RANK`),
    else the CPU. On CPU-only machines PartialState must be told `cpu=True`, or torchrun's processes
    would each believe they are alone (no gloo process group)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    on_cpu = (device is not None and str(device).startswith("cpu")) or not _has_accelerator() or \
        parse_flag_from_env("ACCELERATE_USE_CPU")
    state = PartialState(cpu=on_cpu, timeout=BARRIER_TIMEOUT)
    chosen = str(device) if device is not None else ("cpu" if on_cpu else str(state.device))
    return Ranks(int(state.process_index), int(state.num_processes), chosen, state)

