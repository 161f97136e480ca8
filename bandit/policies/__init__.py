"""Batched bandit policies sharing one contract (see base.Policy)."""
from bandit.policies.base import Policy, Selection
from bandit.policies.exp3 import EXP3
from bandit.policies.greedy import EpsilonGreedy, Softmax
from bandit.policies.linear import LinTS, LinUCB
from bandit.policies.thompson import ThompsonSampling, TopTwoTS
from bandit.policies.ucb import KLUCB, UCB1

__all__ = ["Policy", "Selection", "EXP3", "EpsilonGreedy", "Softmax", "LinTS", "LinUCB",
           "ThompsonSampling", "TopTwoTS", "KLUCB", "UCB1"]
