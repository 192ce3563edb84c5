"""IAM: identity policies for cartfs, evaluated the way AWS evaluates them.

A pure engine -- no I/O, no archive dependency. The archive stores policy documents and
enforces them for a principal; the S3 server and the FUSE mount go through that one door.

Typical use::

    policy = Policy.from_json(document_text, name="alice")        # parse + compile once
    decision = evaluate([policy], "cartfs:Read", archive_arn("/home/alice/a.txt"),
                        {"aws:username": "alice", "aws:SourceIp": "10.0.0.7"})
    decision.allowed, decision.explain()

Modules: :mod:`.policy` (documents), :mod:`.actions`, :mod:`.resources`,
:mod:`.patterns` (wildcards, variables, canonical archive paths), :mod:`.conditions`
(operators), :mod:`.context`, :mod:`.logic` (three-valued logic), :mod:`.evaluate`
(decision and explanation), :mod:`.cache` (generation-checked decision cache).
"""

from cartfs.core.iam.actions import ARCHIVE_ACTIONS
from cartfs.core.iam.cache import DecisionCache, DecisionCacheStatistics, decision_key
from cartfs.core.iam.conditions import OPERATORS, Condition
from cartfs.core.iam.context import ContextInput, RequestContext
from cartfs.core.iam.evaluate import AccessDenied, Decision, enforce, evaluate
from cartfs.core.iam.patterns import (
    ARCHIVE_ARN_PREFIX,
    S3_ARN_PREFIX,
    archive_arn,
    canonical_archive_path,
    s3_arn,
)
from cartfs.core.iam.policy import VERSIONS, Effect, Policy, Statement

__all__ = [
    "ARCHIVE_ACTIONS",
    "ARCHIVE_ARN_PREFIX",
    "OPERATORS",
    "S3_ARN_PREFIX",
    "VERSIONS",
    "AccessDenied",
    "Condition",
    "ContextInput",
    "Decision",
    "DecisionCache",
    "DecisionCacheStatistics",
    "Effect",
    "Policy",
    "RequestContext",
    "Statement",
    "archive_arn",
    "canonical_archive_path",
    "decision_key",
    "enforce",
    "evaluate",
    "s3_arn",
]
