"""Access policy: the Casbin model, its policy lines in the state database, and cached decisions."""

from gateway.policy.engine import Decision, EnvFacts, ObjectFacts, PolicyEngine, SubjectFacts

__all__ = ["Decision", "EnvFacts", "ObjectFacts", "PolicyEngine", "SubjectFacts"]
