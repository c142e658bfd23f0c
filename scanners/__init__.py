"""mir's scanners: static, content-based analysis of uploaded files (no unpickling, ever).

Public API::

    from scanners import scan_path, scan_file, scan_bytes, Limits, Report, Verdict, Finding
    report = scan_path("model.pt")          # in-process, static analysis
    report.verdict                           # clean / suspicious / malicious / error

    from scanners.sandbox import scan_path_sandboxed
    report = scan_path_sandboxed("model.pt")  # same, in a resource-limited child process

Formats are detected from content: pickle (protocols 0-5, concatenated), PyTorch zip and
legacy checkpoints, TorchScript, NumPy .npy/.npz, joblib, gzip/bz2/xz/lzma/zlib wrappers, zip
and tar archives, safetensors, GGUF (chat templates analysed), Keras .keras and HDF5 (legacy
Keras .h5), ONNX, and plain data (text, images, Parquet). Anything else is reported as unknown,
never as clean.
"""

from scanners.api import scan_bytes, scan_file, scan_path
from scanners.limits import Limits
from scanners.report import Finding, Report, Verdict

__all__ = ["Finding", "Limits", "Report", "Verdict", "scan_bytes", "scan_file", "scan_path"]
