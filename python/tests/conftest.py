import pytest

import eplb


def available_backends():
    return [name for name, available, _ in eplb.backends() if available]


def pytest_report_header(config):
    lines = ["eplb %s, libeplb %s at %s" % (eplb.__version__, eplb.library_version,
                                            eplb.library_path)]
    for name, available, detail in eplb.backends():
        lines.append("  backend %-6s %s: %s" % (name, "available" if available else "absent",
                                                 detail))
    return lines


@pytest.fixture(params=available_backends())
def backend(request):
    """Each backend available here (cpu always)."""
    return request.param
