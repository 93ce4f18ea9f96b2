"""Typed, immutable configuration of paper 1's runs (``bsemu train`` / ``evaluate``), and what derives
from it: the scenario, the agents' static description and their seeds. Loaded and checked at the edge by
:func:`deploy.config.load_config`; every field declares its doc and its range or choices
(:func:`coordinator.config.config_field`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from bs_agent.trpo.base_station import AgentSpec, resolve_value_precision
from bs_agent.trpo.ops import agent_ids
from bs_agent.trpo.state import RR_MESSAGES, SCHEMES, GainNorm, InterferenceScale, act_dim, obs_dim
from coordinator.config import ConfigError
from coordinator.config import config_field as _f
from coordinator.placement import check_placement, max_restarts_field, placement_field, secure_field
from radio.channels import Scenario
from radio.seeding import TrpoStream, child_seed

ALGOS = ("trpo", "a2c")
BACKENDS = ("inproc", "ray")
CREDITS = ("common", "difference", "difference_self")
POWER_LEVELS = ("continuous", "on_off")
METHODS = ("max_power", "random", "wmmse", "fp", "optimum", "cell_optimum")
DEFAULT_EVAL = ("max_power", "random", "wmmse", "fp", "optimum")   # cell_optimum on request: not paper 1's
INITS = ("random", "cell_optimum")


@dataclass(frozen=True)
class ScenarioConfig:
    """The network (paper 1 Table I); mapped onto :class:`radio.channels.Scenario`."""

    kind: str = _f("3cell", "network layout", choices=("3cell", "7cell", "19cell"))
    users_per_cell: int = _f(2, "K, users per cell", range=(1, 64))
    alpha: float = _f(3.76, "path-loss exponent", range=(1.0, 10.0))
    cell_radius_m: float = _f(1000.0, "cell radius in m", range=(1.0, 1e5))
    p_max_dbm: float = _f(43.0, "per-user power limit Pmax in dBm", range=(-30.0, 80.0))
    bs_sum_power_dbm: float | None = _f(None, "per-BS sum-power limit in dBm (Fig. 15), or null",
                                        range=(-30.0, 80.0))
    redrop: bool = _f(True, "re-drop users every slot (else a fixed drop, fading only)")


@dataclass(frozen=True)
class PolicyConfig:
    """Policy and value networks (paper 1 Table II)."""

    hidden: int = _f(256, "neurons per hidden layer", range=(1, 4096))
    layers: int = _f(3, "hidden layers (ELU)", range=(1, 16))
    init_log_std: float = _f(-1.0, "initial log-std of the power fraction", range=(-10.0, 2.0))
    power_levels: str = _f("continuous", "what a BS transmits for a power fraction a: continuous (paper 1: clip(a, 0, "
                           "1) x Pmax) | on_off (Pmax where a >= 0.5, else nothing: binary power control, the form "
                           "WMMSE's 7-cell solutions take) -- in training's reward, the evaluation and the execution "
                           "phase alike; the round-robin message still carries the fractions",
                           choices=POWER_LEVELS)
    init: str = _f("random", "the initial policy: random (paper 1) | cell_optimum (its mean fitted to every BS's "
                   "own-cell certified optimum before the first iteration, log-std at init_log_std; "
                   "coordinator.trpo.imitate; the decentralized schemes, the paper's round-robin message)",
                   choices=INITS)


@dataclass(frozen=True)
class TrpoConfig:
    """TRPO (paper 1 Sec. III) and A2C hyper-parameters."""

    delta: float = _f(0.01, "KL constraint delta, eq. (13b)/(23)", range=(1e-8, 10.0))
    zeta: float = _f(0.9, "backtracking step factor, eq. (21)", range=(0.01, 0.999))
    gamma: float = _f(0.99, "discount factor", range=(0.0, 1.0))
    episodes: int = _f(1000, "M, episodes per iteration", range=(1, 1_000_000))
    max_backtracks: int = _f(10, "line-search steps j = 0..max_backtracks-1", range=(1, 200))
    cg_iters: int = _f(10, "conjugate-gradient iterations", range=(1, 1000))
    cg_damping: float = _f(0.01, "damping added to the Fisher matrix in CG", range=(0.0, 10.0))
    cg_tol: float = _f(1e-10, "CG residual tolerance", range=(0.0, 1.0))
    value_lr: float = _f(1e-3, "critic Adam learning rate", range=(1e-8, 1.0))
    value_epochs: int = _f(5, "full-batch critic Adam steps per iteration (one share round each)",
                           range=(0, 1000))
    value_batches: int = _f(1, "critic minibatches: round e takes its Adam step on every k-th episode from "
                            "offset e mod k (k = value_batches; value_epochs = k is one pass over the batch "
                            "per iteration); 1: the full batch every round", range=(1, 1000))
    value_precision: str = _f("float32", "precision of the critic's hidden layers: bfloat16 runs its matmuls ~4x "
                              "faster on CPUs with AMX/AVX512-BF16 (its output layer, V and Adam stay float32) and "
                              "~10x slower where emulated; auto picks bfloat16 where native, else float32 (the "
                              "resolved config records which)", choices=("float32", "bfloat16", "auto"))
    a2c_lr: float = _f(7e-4, "A2C fixed step size (paper: 7e-4)", range=(1e-8, 1.0))
    a2c_max_grad_norm: float = _f(0.0, "A2C: clip the policy gradient g to this norm before the RMSprop step "
                                  "(A2C implementations do; SB3: 0.5); 0: off", range=(0.0, 1e6))
    fvp_stride: int = _f(1, "Fisher-vector products on every k-th episode, times k (1: exact; the Fisher "
                         "on a sub-sample, Schulman et al. 2015 App. C, OpenAI baselines use 5)", range=(1, 1000))
    rr_message: str = _f("powers", "what the round-robin message carries from BS to BS (run.scheme=partial): powers "
                         "(paper 1's state: the power fractions decided so far and the decided flags) | interference "
                         "(the same, plus beside them the running interference at every user of the network, "
                         "sum over the BSs that decided of their gain to the user x their power, each BS adding its "
                         "own from its local CSI; L more float32 per slot, O(K B) as Table III; the state gets it "
                         "as 10 log10(1 + I/noise) / std of the gains in dB). Beside, not instead: a BS needs the "
                         "interference at its own users, which no power tells it, and the powers still say how "
                         "strongly the other users are served, which the interference alone does not. Measured "
                         "(benchmarks/quality.py --rr-message, 2x64, M = 500, seeds 0-2, README): 3 cells, 200 "
                         "iterations: 0.9824 x optimum against 0.9819 (a tie); 7 cells x 8 users, 150 iterations: "
                         "0.687 x WMMSE against 0.637 (better on every seed); 1000 iterations, seeds 0 / 1: 0.894 / "
                         "0.906 against 0.881 / 0.910 (a tie: faster early, not shown to end higher)",
                         choices=RR_MESSAGES)
    credit: str = _f("common", "each BS's return (run.scheme=partial|full): common (paper 1: the common sum-rate R) | "
                     "difference (R minus the sum-rate of the same slot with this BS's powers set to 0, and in the "
                     "round-robin its successors' too, every other power as sampled: a baseline that does not "
                     "depend on the BS's own action, so the expected policy gradient is unchanged while the noise "
                     "of the other BSs' actions and channels mostly cancels; Wolpert & Tumer's difference reward) | "
                     "difference_self (the same, silencing this BS only: in the round-robin its successors keep the "
                     "powers they chose after seeing its own, so there it is a biased baseline, to measure against "
                     "difference; in the fully decentralized scheme the two are one)",
                     choices=CREDITS)

    def __post_init__(self) -> None:
        if self.value_precision == "auto":  # resolved once, here: the run folder's config names the precision
            object.__setattr__(self, "value_precision", resolve_value_precision("auto"))
        if self.value_batches > self.episodes:
            raise ConfigError(f"trpo.value_batches: expected at most trpo.episodes ({self.episodes}) so that "
                              f"no critic minibatch is empty, got {self.value_batches}")


@dataclass(frozen=True)
class RunConfig:
    """What to run and where."""

    scheme: str = _f("partial", "centralized | partial (round-robin) | full", choices=SCHEMES)
    algo: str = _f("trpo", "trpo | a2c", choices=ALGOS)
    backend: str = _f("ray", "inproc (one process) | ray (actors + ZeroMQ)", choices=BACKENDS)
    seed: int = _f(0, "root seed", range=(0, 2**63 - 1))
    threads: int = _f(1, "torch threads of every process that computes (the inproc process, the coordinator, each BS "
                         "actor); 2 lets the centralized scheme's one agent use both cores of a 2-core machine",
                      range=(1, 256))
    iterations: int = _f(100, "training iterations", range=(0, 10_000_000))
    checkpoint_every: int = _f(10, "checkpoint every N iterations", range=(1, 10_000_000))
    keep_checkpoints: int = _f(3, "checkpoints kept", range=(1, 1000))
    eval_slots: int = _f(1000, "held-out realizations for the final evaluation", range=(0, 1_000_000))
    eval_methods: tuple[str, ...] = _f(DEFAULT_EVAL, "baselines in the final evaluation", choices=METHODS)
    placement: str = placement_field("ray backend's actors", "a BS index or cu")
    bs_per_actor: int = _f(1, "ray backend: consecutive BSs hosted by one actor (1: one BS per actor; at most the "
                              "number of BSs), for large networks: the round-robin token moves in memory between "
                              "BSs of one actor, over ZeroMQ between actors, with the same numbers; an actor is placed "
                              "where its BSs are pinned. Training only: bsemu execute keeps one BS per actor",
                           range=(1, 4096))
    max_restarts: int = max_restarts_field("a BS actor")
    secure: str | bool = secure_field()
    tensorboard: bool = _f(False, "also write metrics.csv's scalars as TensorBoard event files into the run folder's "
                                  "tb/ (one step per iteration; needs the tensorboard extra)")


@dataclass(frozen=True)
class TrainLinksConfig:
    """The round-robin token's links during training (logical time): asynchrony as the policy meets it."""

    loss: float = _f(0.0, "probability that a BS's vector from its predecessor is lost in a slot (round-robin "
                          "only): it then sees its predecessors as undecided, as the execution phase's 'undecided' "
                          "fallback does; logged as dropped", range=(0.0, 1.0))


@dataclass(frozen=True)
class TrainConfig:
    """Everything `bsemu train` needs."""

    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    trpo: TrpoConfig = field(default_factory=TrpoConfig)
    run: RunConfig = field(default_factory=RunConfig)
    links: TrainLinksConfig = field(default_factory=TrainLinksConfig)

    @property
    def method_name(self) -> str:
        """Name of the trained method in evaluation tables, e.g. ``trpo_partial``."""
        return f"{self.run.algo}_{self.run.scheme}"


# ---------------------------------------------------------------- derived from a config
def scenario_of(cfg: TrainConfig) -> Scenario:
    """The radio scenario of the run (paper 1 Table I, with the config's overrides)."""
    s = cfg.scenario
    return Scenario.preset(s.kind, users_per_cell=s.users_per_cell, alpha=s.alpha, cell_radius_m=s.cell_radius_m,
                           p_max_dbm=s.p_max_dbm, bs_sum_power_dbm=s.bs_sum_power_dbm, redrop=s.redrop)


def agent_spec(cfg: TrainConfig) -> AgentSpec:
    """What every agent of the run shares (scheme, sizes, networks, the initialisation seed)."""
    sc = scenario_of(cfg)
    rr = cfg.trpo.rr_message
    scale = None if rr == "powers" else InterferenceScale.of(_gain_norm(sc), sc.p_max_w, sc.noise_w,
                                                             sc.bs_sum_power_w)
    return AgentSpec(cfg.run.scheme, sc.cells, sc.K, cfg.policy.hidden, cfg.policy.layers,
                     cfg.policy.init_log_std, child_seed(cfg.run.seed, TrpoStream.INIT), cfg.trpo.fvp_stride,
                     cfg.trpo.value_batches, cfg.trpo.value_precision, rr, scale)


@functools.lru_cache(maxsize=8)
def _gain_norm(scenario: Scenario) -> GainNorm:
    """The scenario's fixed gain normalisation (as the trainer's), measured once per process."""
    return GainNorm.of_scenario(scenario)


def agent_seeds(cfg: TrainConfig) -> list[int]:
    """Each agent's sampling seed, in :func:`bs_agent.trpo.ops.agent_ids` order."""
    return [child_seed(cfg.run.seed, TrpoStream.AGENT, i) for i in agent_ids(agent_spec(cfg))]


def check_feasible(cfg: TrainConfig) -> None:
    """Checks across sections; raises :class:`ConfigError` naming the keys."""
    check_placement(cfg.run.placement)
    cells = scenario_of(cfg).cells
    if cfg.run.bs_per_actor > cells:
        raise ConfigError(f"run.bs_per_actor: expected 1 to the number of BSs ({cells} for scenario.kind="
                          f"{cfg.scenario.kind}), got {cfg.run.bs_per_actor}")
    if "optimum" in cfg.run.eval_methods and cfg.scenario.kind != "3cell" and cfg.run.eval_slots > 0:
        raise ConfigError("run.eval_methods: 'optimum' is certified for small networks only (3cell); "
                          "remove it for 7cell")
    if "cell_optimum" in cfg.run.eval_methods and scenario_of(cfg).K > 8 and cfg.run.eval_slots > 0:
        raise ConfigError(f"run.eval_methods: 'cell_optimum' is certified for at most 8 users per cell, got "
                          f"scenario.users_per_cell={scenario_of(cfg).K}; remove it")
    if cfg.policy.init == "cell_optimum" and (cfg.run.scheme == "centralized" or cfg.trpo.rr_message != "powers"
                                              or scenario_of(cfg).K > 8):
        raise ConfigError("policy.init=cell_optimum: for the decentralized schemes (run.scheme=full|partial) with "
                          "trpo.rr_message=powers and at most 8 users per cell; expected policy.init=random")
    if cfg.run.algo == "a2c" and cfg.run.scheme != "centralized":
        raise ConfigError("run.algo: a2c is the centralized baseline; expected run.scheme=centralized")
    if cfg.links.loss > 0 and cfg.run.scheme != "partial":
        raise ConfigError(f"links.loss={cfg.links.loss:g}: lost power vectors exist in the round-robin scheme only "
                          "(run.scheme=partial)")
    if cfg.trpo.credit != "common" and cfg.run.scheme == "centralized":
        raise ConfigError(f"trpo.credit={cfg.trpo.credit}: a difference return exists for one BS among several "
                          "(run.scheme=partial or full); expected common")
    if cfg.trpo.rr_message != "powers" and cfg.run.scheme != "partial":
        raise ConfigError(f"trpo.rr_message={cfg.trpo.rr_message}: the round-robin message exists in "
                          "run.scheme=partial only; expected powers")


def network_sizes(cfg: TrainConfig) -> tuple[int, int]:
    """(theta, phi): the lengths of the flat policy and value parameter vectors the config implies (policy
    [obs, hidden x layers, 2 x act] for the mean and log-std of each power, value [obs, hidden x layers, 1])."""
    sc = scenario_of(cfg)
    obs = obs_dim(cfg.run.scheme, sc.cells, sc.K, cfg.trpo.rr_message)
    act = act_dim(cfg.run.scheme, sc.cells, sc.K)
    h, n = cfg.policy.hidden, cfg.policy.layers

    def mlp(inp: int, out: int) -> int:
        return inp * h + h + (n - 1) * (h * h + h) + h * out + out

    return mlp(obs, 2 * act), mlp(obs, 1)


def n_agents(cfg: TrainConfig) -> int:
    """Agents of the run: the central agent, or one per BS."""
    return 1 if cfg.run.scheme == "centralized" else scenario_of(cfg).cells


def memory_estimate(cfg: TrainConfig) -> dict[str, float]:
    """Bytes the run's largest arrays will hold, by part (each named with the keys that size it): the
    networks with their gradients, CG vectors and optimiser moments, every agent's cached forward passes over
    its M samples (policy, critic, Fisher sub-sample), the channels of an iteration [M, L, L] and of the
    held-out evaluation. An upper-side estimate from the sizes alone (nothing allocated), for the edge's
    memory budget."""
    sc = scenario_of(cfg)
    theta, phi = network_sizes(cfg)
    agents, M, L = n_agents(cfg), cfg.trpo.episodes, sc.L
    h, layers = cfg.policy.hidden, cfg.policy.layers
    f32, f64 = 4, 8
    return {
        "networks (policy.hidden x policy.layers)": (agents + 1) * (theta + phi) * f64 * 8.0,
        "cached forward passes (trpo.episodes x policy.hidden x policy.layers)": agents * M * h * layers * f32 * 8.0,
        "channels of an iteration (trpo.episodes, scenario)": M * L * L * f64 * 4.0,
        "evaluation channels (run.eval_slots, scenario)": cfg.run.eval_slots * L * L * f64 * 4.0,
    }
