"""What a GPU spends while a bench times it: energy (NVML's counter), mean power and mean SM clock
over a span of host time. An H100 that trains at its power limit runs as fast as its energy per
token allows, so J/token says more than tokens/s alone when two loops are compared.

The samples are taken by a separate process, so the loop being timed shares no interpreter lock
with them; both read the same monotonic clock (time.perf_counter). Needs the nvidia-ml-py package
(`pynvml`); without it, or without a GPU, `PowerLog.open` returns None and the bench prints no
power figures.

    python bench/power.py BUS_ID SECONDS   (the sampler; prints "perf_counter joules sm_mhz" lines)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class PowerLog:
    def __init__(self, sampler: subprocess.Popen, output: Path):
        self.sampler, self.output = sampler, output
        self.samples: list[tuple[float, float, float]] | None = None

    @classmethod
    def open(cls, device, every_s: float = 0.02) -> PowerLog | None:
        if device.type != "cuda":
            return None
        try:
            import pynvml  # noqa: F401
        except ImportError:
            return None
        import torch

        props = torch.cuda.get_device_properties(device)
        # CUDA and NVML may number the GPUs differently: the PCI address names the same one.
        return cls.start(f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0", every_s)

    @classmethod
    def start(cls, bus: str, every_s: float) -> PowerLog:
        """Start sampling the GPU at PCI address `bus`."""
        output = Path(tempfile.mkstemp(suffix=".power")[1])
        with output.open("w") as sink:
            sampler = subprocess.Popen([sys.executable, __file__, bus, str(every_s)], stdout=sink)
        return cls(sampler, output)

    def close(self) -> None:
        if self.samples is None:
            self.sampler.terminate()
            self.sampler.wait()
            self.samples = [tuple(map(float, line.split())) for line in self.output.read_text().splitlines()]
            self.output.unlink()

    def between(self, start: float, end: float) -> dict | None:
        """Mean power (W) and SM clock (MHz) between two perf_counter readings, once closed. The
        span should hold many samples: NVML updates its counter every few milliseconds. None, with
        a note on stderr, when it holds fewer than ten."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 10:
            print(f"power: only {len(inside)} samples in the timed span ({end - start:.2f} s); time more steps",
                  file=sys.stderr)
            return None
        (t0, j0, _), (t1, j1, _) = inside[0], inside[-1]
        return {"power_w": (j1 - j0) / (t1 - t0), "sm_clock_mhz": sum(s[2] for s in inside) / len(inside)}


def sample(bus: str, every_s: float) -> None:
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus)
    parent = os.getppid()
    while os.getppid() == parent:  # a bench that dies without closing the log takes the sampler with it
        joules = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000  # the counter is in millijoules
        clock = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
        print(f"{time.perf_counter():.6f} {joules:.3f} {clock}", flush=True)
        time.sleep(every_s)


if __name__ == "__main__":
    sample(sys.argv[1], float(sys.argv[2]))
