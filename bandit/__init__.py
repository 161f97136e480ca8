"""Adaptive traffic allocation among variants: batched bandit policies, guardrails, stopping, OPE."""
from bandit.allocation import Allocation
from bandit.decision import Decision, DecisionRule, DecisionTS, LatencyStats, decide
from bandit.errors import BanditArmCountError, BanditInputError, BanditStateError
from bandit.ledger import DecisionLedger, Feedback
from bandit.memory import Discounted, SlidingWindow, Stationary
from bandit.ope import Estimate, LoggedBandit, off_policy_value
from bandit.options import policy_kwargs
from bandit.policies import (
    EXP3,
    KLUCB,
    UCB1,
    EpsilonGreedy,
    LinTS,
    LinUCB,
    Policy,
    Selection,
    Softmax,
    ThompsonSampling,
    TopTwoTS,
)
from bandit.posterior import BetaBernoulli, LogNormalLatency, NormalInverseGamma
from bandit.state import from_json, to_json
from bandit.stopping import GLRResult, GLRRule, StoppingResult, StoppingRule, check_glr, check_stopping
from bandit.tradeoff import Constrained, LatencySLO, NonInferiority, Scalarised, TradeoffTS, pareto_front

__all__ = [
    "Allocation", "Decision", "DecisionRule", "DecisionTS", "LatencyStats", "decide",
    "BanditArmCountError", "BanditInputError", "BanditStateError", "DecisionLedger", "Feedback",
    "Discounted", "SlidingWindow", "Stationary", "Estimate", "LoggedBandit", "off_policy_value", "policy_kwargs",
    "UCB1", "KLUCB", "EXP3", "EpsilonGreedy", "LinTS", "LinUCB", "Policy", "Selection", "Softmax", "ThompsonSampling",
    "TopTwoTS", "BetaBernoulli", "LogNormalLatency", "NormalInverseGamma", "from_json", "to_json",
    "StoppingResult", "StoppingRule", "check_stopping", "GLRResult", "GLRRule", "check_glr",
    "Constrained", "LatencySLO", "NonInferiority", "Scalarised", "TradeoffTS", "pareto_front",
]
