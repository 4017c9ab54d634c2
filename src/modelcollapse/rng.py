"""Random streams: one independent generator per (seed, replicate, role).

Every random draw in a run comes from a stream keyed by the run seed, the replicate
index and a *role* (what the numbers are for). Two consequences we rely on:

* replicate ``r`` sees the same numbers whether the run has 3 replicates or 3000,
  whichever worker ran it, and in whatever order replicates ran;
* roles are separate streams, so changing the data policy does not change the
  synthetic samples drawn from a model (common random numbers across policies).

Streams live for the whole chain (creating a generator costs ~10 µs, which would
dominate a vectorised Gaussian chain if done per generation). Their states are
saved in every checkpoint, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Roles, in a fixed order: the index is part of the stream key, so never reorder.
ROLES: tuple[str, ...] = ("real", "heldout", "sample", "policy", "fit", "metric", "detector")


def stream(seed: int, replicate: int, role: str) -> np.random.Generator:
    """The generator for one replicate and role, derived from the seed only."""
    if role not in ROLES:
        raise ValueError(f"unknown random-stream role {role!r}; roles are {ROLES}")
    seq = np.random.SeedSequence(seed, spawn_key=(int(replicate), ROLES.index(role)))
    return np.random.Generator(np.random.PCG64(seq))


class RandomStreams:
    """All the streams of a run: ``streams[role]`` is a list with one generator per replicate."""

    def __init__(self, seed: int, replicates: Sequence[int]) -> None:
        self.seed = int(seed)
        self.replicates = [int(r) for r in replicates]
        # Created on first use: a 20,000-replicate chain would otherwise spend seconds
        # building generators for roles its family never draws from.
        self._streams: dict[str, list[np.random.Generator]] = {}

    def __getitem__(self, role: str) -> list[np.random.Generator]:
        if role not in self._streams:
            self._streams[role] = [stream(self.seed, r, role) for r in self.replicates]
        return self._streams[role]

    def child_seeds(self, role: str) -> np.ndarray:
        """One 63-bit seed per replicate drawn from ``role``: for work shipped to other processes.

        A generator sent to a worker process is a copy, so its advance would be lost;
        instead the parent draws a seed (advancing its own stream deterministically)
        and the worker builds a fresh generator from it.
        """
        return np.array([g.integers(2**63) for g in self[role]], dtype=np.int64)

    # -- checkpointing -------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """PCG64 states as uint64 arrays (npz-friendly; no pickle)."""
        out = {}
        for role, gens in self._streams.items():
            rows = []
            for g in gens:
                st = g.bit_generator.state
                s, inc = st["state"]["state"], st["state"]["inc"]
                rows.append(
                    [s >> 64, s & _MASK64, inc >> 64, inc & _MASK64, st["has_uint32"], st["uinteger"]]
                )
            out[f"rng_{role}"] = np.array(rows, dtype=np.uint64).reshape(len(gens), 6)
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the streams saved by :meth:`state_arrays`; roles never used stay fresh."""
        for role in ROLES:
            if f"rng_{role}" not in arrays:
                continue
            gens, rows = self[role], arrays[f"rng_{role}"]
            if len(rows) != len(gens):
                raise ValueError(f"checkpoint has {len(rows)} streams for role {role!r}, expected {len(gens)}")
            for g, row in zip(gens, rows):
                hi, lo, ihi, ilo, has, uint = (int(v) for v in row)
                g.bit_generator.state = {
                    "bit_generator": "PCG64",
                    "state": {"state": (hi << 64) | lo, "inc": (ihi << 64) | ilo},
                    "has_uint32": has,
                    "uinteger": uint,
                }


_MASK64 = (1 << 64) - 1
