"""The sans-IO ICE agent: candidates, check lists, nomination, consent, generations and restarts."""

from .agent import (
    Deadline,
    IceAgent,
    IceError,
    InvalidCredentialsError,
    Output,
    UnknownGenerationError,
    validate_credentials,
)
from .candidate import Candidate, CandidateError, candidate_priority, foundation_for, pair_priority
from .checklist import CandidatePair, Generation, PairState
from .config import IceConfig
from .events import (
    BaseReleased,
    CandidateErrorEvent,
    Event,
    GatheringComplete,
    GatheringStateChanged,
    GenerationReleased,
    LocalCandidateGathered,
    MappedAddressChanged,
    PathResumed,
    PathSilent,
    RoleChanged,
    SelectedPairChanged,
    StateChanged,
)
from .states import ALLOWED, IceGatheringState, IceTransportState

__all__ = [
    "BaseReleased",
    "ALLOWED",
    "Candidate",
    "CandidateError",
    "CandidateErrorEvent",
    "CandidatePair",
    "Deadline",
    "Output",
    "Event",
    "GatheringComplete",
    "GatheringStateChanged",
    "Generation",
    "GenerationReleased",
    "IceAgent",
    "IceConfig",
    "IceError",
    "IceGatheringState",
    "IceTransportState",
    "InvalidCredentialsError",
    "LocalCandidateGathered",
    "MappedAddressChanged",
    "PathResumed",
    "PathSilent",
    "PairState",
    "RoleChanged",
    "SelectedPairChanged",
    "StateChanged",
    "UnknownGenerationError",
    "candidate_priority",
    "foundation_for",
    "pair_priority",
    "validate_credentials",
]
