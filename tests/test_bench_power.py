"""bench/power.py, the energy sampler behind the throughput bench's J/token figures, run against a
stand-in for NVML whose GPU draws a known power."""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from power import PowerLog  # noqa: E402

FAKE_NVML = '''
import time
NVML_CLOCK_SM = 0
def nvmlInit(): pass
def nvmlDeviceGetHandleByPciBusId(bus):
    assert bus == "00000000:19:00.0", bus
    return bus
def nvmlDeviceGetTotalEnergyConsumption(handle):
    return int(time.perf_counter() * 450_000)  # millijoules: a GPU drawing 450 W
def nvmlDeviceGetClockInfo(handle, kind):
    return 1755
'''


def test_the_sampler_reads_power_and_clock_over_a_span(tmp_path, monkeypatch):
    (tmp_path / "pynvml.py").write_text(FAKE_NVML)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the sampling process imports the stand-in
    log = PowerLog.start("00000000:19:00.0", every_s=0.01)
    deadline = time.perf_counter() + 30  # a loaded CI machine may take a while to start the sampler
    while len(log.output.read_text().splitlines()) < 50 and time.perf_counter() < deadline:
        time.sleep(0.1)
    middle = time.perf_counter()
    time.sleep(0.5)
    log.close()
    assert log.sampler.returncode is not None and not log.output.exists()
    first = log.samples[0][0]
    used = log.between(first, middle)
    assert used["power_w"] == pytest.approx(450, rel=0.02) and used["sm_clock_mhz"] == 1755
    assert log.between(middle, middle + 0.05) is None  # too few samples for a figure
