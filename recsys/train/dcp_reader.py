"""Reading a distributed checkpoint's `.metadata` without running the code a pickle can carry.

PyTorch's `FileSystemReader.read_metadata` unpickles `.metadata` with `pickle.load`, so a modified
file could run anything on resume. `SafeFileSystemReader` overrides that one method (the storage
reader is DCP's public extension point) and unpickles through `MetadataUnpickler`, which admits
only the classes DCP writes into metadata: its metadata dataclasses, the file-system storage
info, torch.Size, dtypes, layouts and paths. Anything else is refused before it is imported.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from recsys.errors import CheckpointError
from recsys.integrity import first_line

METADATA_CLASSES = {"Metadata", "MetadataIndex", "StorageMeta", "TensorProperties", "TensorStorageMetadata",
                     "ChunkStorageMetadata", "BytesStorageMetadata", "_MEM_FORMAT_ENCODING"}
ALLOWED = {
    *(("torch.distributed.checkpoint.metadata", name) for name in METADATA_CLASSES),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # a layout by its name (torch.strided)
    ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PurePosixPath"),
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
}


class MetadataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only checkpoint-metadata classes (and torch dtypes)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which checkpoint metadata never holds")


def read_metadata(path: Path) -> Metadata:
    """The Metadata pickled in `path`; CheckpointError naming the file if it holds anything else."""
    try:
        with open(path, "rb") as f:
            metadata = MetadataUnpickler(f).load()
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: {first_line(e)}; refused") from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: not readable checkpoint metadata ({first_line(e)})") from None
    if not isinstance(metadata, Metadata):
        raise CheckpointError(f"{path}: holds a {type(metadata).__name__}, not checkpoint metadata; refused")
    return metadata


class SafeFileSystemReader(FileSystemReader):
    """DCP's file-system reader with `.metadata` read by `read_metadata` above."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        rank = kwargs.get("rank")
        metadata = read_metadata(Path(self.path) / (".metadata" if rank is None else f"__{rank}.metadata"))
        if metadata.storage_meta is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata
