"""Typed, immutable configuration of the zeroth-order runs (paper 2) and its derived quantities.

Loaded by ``deploy.config.load_config(ZOConfig, path, overrides)``; every field declares its range
or choices (:func:`coordinator.config.config_field`) so a bad value fails at the edge with the dotted key
named. Checks that involve several fields live in :func:`validate` (raises :class:`ConfigError`). What each
link's process needs is derived here too (:func:`link_setups`): no run config crosses into a link.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bs_agent.zo.agent import UPDATES, ZOHyper
from bs_agent.zo.host import LinkSetup
from bs_agent.zo.policy import MLPSpec, feature_norm, state_dim
from coordinator.config import ConfigError
from coordinator.config import config_field as _f
from coordinator.placement import check_placement, max_restarts_field, placement_field, secure_field
from coordinator.zo.graphs import diameter, fully_connected, random_connected_graph
from protocol.links import LinkModel
from radio.channels import Scenario
from radio.seeding import ZoStream, rng_for

METHODS = ("proposed", "adam", "fl")


@dataclass(frozen=True)
class ZOScenarioConfig:
    """The N-link network of paper 2 Sec. IV (G_lj = c_l |h_lj|^2, h ~ N(0, 1) or CN(0, 1))."""

    n_links: int = _f(5, "N, number of links", range=(2, 256))
    noise_w: float = _f(0.5, "sigma_n^2 in W", range=(1e-12, 1e6))
    p_max_w: float = _f(10.0, "p_max in W", range=(1e-9, 1e9))
    path_loss: tuple[float, ...] = _f((), "per-receiver path-loss factors c_l (N values) or empty")
    channel: str = _f("real", "h_lj ~ N(0, 1) real (paper Sec. IV) | CN(0, 1) complex (|h|^2 ~ Exp(1), H in C^NxN "
                              "as Sec. II writes it)", choices=("real", "complex"))


@dataclass(frozen=True)
class ZOPolicyConfig:
    """Per-link MLP phi_i (tanh hidden layers, sigmoid output x p_max)."""

    hidden: tuple[int, ...] = _f((10,), "hidden layer sizes of every link's policy", range=(1, 1_000_000_000))
    per_link_hidden: str = _f("", "optional per-link hidden sizes, e.g. '10;10,10;8;8;6' (one per link)")
    inputs: str = _f("paper", "paper: s_i of Sec. IV | memoryless: interference caused at full power G_ji p_max "
                              "and no previous-power feature (no input depends on the link's own past power)",
                     choices=("paper", "memoryless"))
    input_norm: bool = _f(False, "standardise the inputs with fixed constants (their mean and std at full power "
                                 "on the channel model, bs_agent.zo.policy.feature_norm); false: raw (paper)")
    features: tuple[str, ...] = _f(("rx", "caused", "direct", "prev"),
                                   "input groups each link's policy sees (others are 0): rx = R_i, caused = T_i, "
                                   "direct = G_ii, prev = p_i(t-1); all four: paper")
    caused: str = _f("each", "caused-interference input: each (T_ij per other link j, N - 1 inputs: paper) | sum "
                             "(pooled, log10(1 + sum_j T_ij / sigma^2): one input)", choices=("each", "sum"))
    out_bias: float = _f(0.0, "initial output bias of every policy (0: power p_max / 2 on average, paper)",
                         range=(-100.0, 100.0))
    logit_bound: float = _f(0.0, "c > 0: output pre-activation bounded to c tanh(q / c) before the sigmoid; "
                                 "0: unbounded (paper)", range=(0.0, 1e6))
    param_bound: float = _f(0.0, "c > 0: every weight and bias the policy uses is c tanh(theta / c) of the "
                                 "parameter Algorithm 1 trains, bounded in (-c, c), so a link's logit cannot run off "
                                 "to -100 where its own perturbations no longer change its power (dead link); "
                                 "0: theta itself (paper)",
                            range=(0.0, 1e6))


@dataclass(frozen=True)
class ZOAlgoConfig:
    """Algorithm 1 and the exchange of d (paper 2 Sec. III)."""

    update: str = _f("sync", "eq. (7) sync | eq. (8) async | eq. (9) graph", choices=UPDATES)
    graph: str = _f("full", "communication graph: full | random (connected, degree <= max_degree)",
                    choices=("full", "random"))
    max_degree: int = _f(2, "max |N_i| of the random graph", range=(1, 255))
    d_max: int = _f(-1, "D_max, iterations an entry stays usable (-1: graph diameter)", range=(-1, 1000))
    mu: float = _f(1.0, "smoothing radius mu", range=(1e-9, 1e6))
    gamma0: float = _f(1.0, "gamma_0 of gamma^k = gamma_0 / (k+1)^gamma_tilde", range=(0.0, 1e6))
    gamma_tilde: float = _f(0.5, "gamma_tilde", range=(0.0, 10.0))
    layer_scale: tuple[float, ...] = _f((), "per-layer scale c_l: Algorithm 1 on theta' with policy "
                                        "phi_i(s, D theta'), D = diag(c_l on layer l's weights and biases): "
                                        "perturbation mu c_l u and step (gamma/mu) alpha c_l u in layer l; "
                                        "empty: all 1 (paper)")
    b1: int = _f(50, "B1 slots at theta", range=(1, 1_000_000))
    b2: int = _f(50, "B2 slots at theta + mu u", range=(1, 1_000_000))
    utility: str = _f("rate", "U_i = R_i (rate) or log(R_i + eps) (log_rate)", choices=("rate", "log_rate"))
    asynchrony: float = _f(0.0, "max offset between links in % of B (paper: 0, 10, 25, 50)", range=(0.0, 50.0))
    offsets: str = _f("linspace", "per-link offsets: linspace (link i earliest-first) | random",
                      choices=("linspace", "random"))
    delay_kind: str = _f("fixed", "d-message delay model", choices=("fixed", "uniform", "exponential"))
    delay: float = _f(0.0, "d-message base delay (slots on the logical clock, s on the real clock)",
                      range=(0.0, 1e6))
    jitter: float = _f(0.0, "delay jitter (uniform width / exponential mean)", range=(0.0, 1e6))
    drop_prob: float = _f(0.0, "probability a d message is lost", range=(0.0, 1.0))


@dataclass(frozen=True)
class ZOBaselineConfig:
    """Centralized Adam and federated learning (paper 2 Sec. IV benchmarks)."""

    adam_lr: float = _f(0.01, "Adam learning rate (centralized and FL local steps)", range=(1e-8, 10.0))
    adam_lr_end: float = _f(0.0, "> 0: Adam's learning rate decays geometrically from adam_lr to this at "
                                  "run.iterations (lr_k = adam_lr (adam_lr_end / adam_lr)^(k / K)); 0: constant",
                            range=(0.0, 10.0))
    fl_interval: int = _f(10, "I, iterations between FL averaging rounds", range=(1, 1_000_000))


@dataclass(frozen=True)
class ZORunConfig:
    """What to run and where."""

    method: str = _f("proposed", "proposed (Algorithm 1) | adam (centralized) | fl", choices=METHODS)
    backend: str = _f("inproc", "inproc (one process) | ray (one actor per link, d over ZeroMQ)",
                      choices=("inproc", "ray"))
    links_per_actor: int = _f(1, "ray backend: consecutive links hosted by one actor, each with its own policy and "
                                 "ZeroMQ node (> 1: fewer processes for many links on few cores)",
                              range=(1, 100_000))
    clock: str = _f("logical", "logical (slots, deterministic) | real (wall clock: ray backend, links run free, "
                               "d delayed by the protocol's deadline queue, algo.delay/jitter in s; async or graph)",
                    choices=("logical", "real"))
    slot_s: float = _f(1e-3, "real clock: wall-clock seconds per channel slot (the air never runs ahead of it)",
                       range=(1e-6, 10.0))
    guard_slots: int = _f(20, "real clock: slots after each iteration's B for the exchange and update; link i's "
                              "iteration k starts at slot o_i + k (B + guard), later if its update is late",
                          range=(0, 1_000_000))
    seed: int = _f(0, "root seed", range=(0, 2**63 - 1))
    iterations: int = _f(1000, "iterations K (each B = B1 + B2 channel slots per link)", range=(0, 100_000_000))
    eval_every: int = _f(50, "evaluate the policies every this many iterations", range=(1, 100_000_000))
    eval_sequences: int = _f(32, "evaluation: independent channel sequences", range=(1, 100_000))
    eval_slots: int = _f(50, "evaluation: slots per sequence", range=(1, 100_000))
    checkpoint_every: int = _f(500, "checkpoint every this many iterations", range=(1, 100_000_000))
    keep_checkpoints: int = _f(3, "checkpoints kept", range=(1, 1000))
    log_messages: bool = _f(True, "write one CSV row per message (messages.csv)")
    placement: str = placement_field("ray backend's link actors", "an actor index")
    max_restarts: int = max_restarts_field("a link actor")
    secure: str | bool = secure_field(". Secure with run.links_per_actor > 1: each link gets its own ZeroMQ "
                                      "context and co-hosted links talk over authenticated TCP, not inproc. The "
                                      "air port (coordinator <-> links) stays in clear")
    tensorboard: bool = _f(False, "also write metrics.csv's scalars as TensorBoard event files into the run folder's "
                                  "tb/ (one step per metrics row, at its iteration; needs the tensorboard extra)")


@dataclass(frozen=True)
class ZOConfig:
    """Everything ``bsemu zo`` needs."""

    scenario: ZOScenarioConfig = field(default_factory=ZOScenarioConfig)
    policy: ZOPolicyConfig = field(default_factory=ZOPolicyConfig)
    algo: ZOAlgoConfig = field(default_factory=ZOAlgoConfig)
    baseline: ZOBaselineConfig = field(default_factory=ZOBaselineConfig)
    run: ZORunConfig = field(default_factory=ZORunConfig)

    def replace(self, **sections: dict[str, Any]) -> ZOConfig:
        """A copy with some fields of some sections changed: ``cfg.replace(run={"seed": 1})``."""
        new = {name: dataclasses.replace(getattr(self, name), **chg) for name, chg in sections.items()}
        return dataclasses.replace(self, **new)


# ---------------------------------------------------------------- derived quantities

def validate(cfg: ZOConfig) -> None:
    """Cross-field checks; raises :class:`ConfigError` naming the keys."""
    check_placement(cfg.run.placement)
    N = cfg.scenario.n_links
    if cfg.scenario.path_loss and len(cfg.scenario.path_loss) != N:
        raise ConfigError(f"scenario.path_loss: expected {N} factors (scenario.n_links) or none, "
                            f"got {len(cfg.scenario.path_loss)}")
    if any(not c > 0 for c in cfg.scenario.path_loss):
        raise ConfigError("scenario.path_loss: expected factors > 0")
    if cfg.algo.update == "sync" and cfg.algo.asynchrony > 0:
        raise ConfigError("algo.update=sync needs algo.asynchrony=0 (use algo.update=async or graph)")
    if cfg.algo.update in ("sync", "async") and cfg.algo.graph != "full":
        raise ConfigError(f"algo.update={cfg.algo.update} needs algo.graph=full (use algo.update=graph)")
    if cfg.algo.graph == "random" and cfg.algo.max_degree < 2 and N > 2:
        raise ConfigError("algo.max_degree: a connected graph on more than 2 links needs >= 2")
    hidden_per_link(cfg)
    if cfg.algo.layer_scale:
        if any(not c > 0 for c in cfg.algo.layer_scale):
            raise ConfigError("algo.layer_scale: expected factors > 0")
        bad = [sp.sizes for sp in specs(cfg) if len(sp.sizes) - 1 != len(cfg.algo.layer_scale)]
        if bad:
            raise ConfigError(f"algo.layer_scale: expected one factor per layer ({len(bad[0]) - 1} for layer "
                                f"sizes {bad[0]}), got {len(cfg.algo.layer_scale)}")
    if cfg.run.method == "fl" and len(set(specs(cfg))) != 1:
        raise ConfigError("run.method=fl averages parameters: every link needs the same architecture "
                            "(leave policy.per_link_hidden empty)")
    if cfg.run.clock == "real":
        _validate_real_clock(cfg)
    if cfg.algo.update == "sync" and (cfg.algo.delay > 0 or cfg.algo.jitter > 0):
        raise ConfigError(f"algo.update=sync with algo.delay={cfg.algo.delay:g} / algo.jitter={cfg.algo.jitter:g}: "
                          "eq. (7) uses only the d_j^k of its own iteration, so every delayed d would be discarded "
                          "and the links would learn nothing; set algo.delay=0 and algo.jitter=0, or use "
                          "algo.update=async (eq. (8)) or graph (eq. (9))")
    a = cfg.algo
    if cfg.run.clock == "logical" and (a.delay != int(a.delay) or a.jitter != int(a.jitter)):
        raise ConfigError("algo.delay / algo.jitter: whole slots on the logical clock")
    B = cfg.algo.b1 + cfg.algo.b2
    if cfg.run.clock == "logical" and cfg.algo.update == "async" and max_delay_bound(cfg) + max(offsets(cfg)) >= B:
        raise ConfigError("algo.delay + jitter + max offset must stay below B = b1 + b2 slots for eq. (8)")


F64 = 8            # bytes of a float64
AIR_BLOCK = 256    # slots the air draws per channel block (coordinator.zo.air.BLOCK)
NORM_SLOTS = 4096  # slots drawn for the input normalisation constants (_norm)


def layer_sizes(cfg: ZOConfig) -> list[tuple[int, ...]]:
    """[N] layer sizes (m, h_1, ..., 1) of every link's policy (as :func:`specs`, without building them)."""
    m = state_dim(cfg.scenario.n_links)
    return [(m, *h, 1) for h in hidden_per_link(cfg)]


def param_counts(cfg: ZOConfig) -> list[int]:
    """[N] length of every link's parameter vector theta_i."""
    return [sum(o * i + o for i, o in zip(sz[:-1], sz[1:], strict=False)) for sz in layer_sizes(cfg)]


def memory_estimate(cfg: ZOConfig) -> dict[str, float]:
    """Bytes the run's largest arrays will hold, by part (each named with the keys that size it): every
    link's parameters and their copies (perturbed, cached u, Adam moments), the air's block-diagonal layers
    (a group of g links with the same architecture is one [g in, g out] matrix per layer), the channel
    batches of an iteration, the evaluation channels and the first-order methods' autograd activations.
    An upper-side estimate from the sizes alone (nothing allocated), for the edge's memory budget."""
    N = cfg.scenario.n_links
    sizes = layer_sizes(cfg)
    n_params = param_counts(cfg)
    groups: dict[tuple[int, ...], int] = {}
    for sz in sizes:
        groups[sz] = groups.get(sz, 0) + 1
    block = sum(sum((g * i) * (g * o) for i, o in zip(sz[:-1], sz[1:], strict=False)) for sz, g in groups.items())
    B = cfg.algo.b1 + cfg.algo.b2
    widest = max(max(sz) for sz in sizes)
    E, S = cfg.run.eval_sequences, cfg.run.eval_slots
    keys = "policy.hidden / policy.per_link_hidden, scenario.n_links"
    parts = {
        f"policies ({keys})": 8.0 * F64 * sum(n_params),
        f"block-diagonal layers ({keys})": 2.0 * F64 * block,
        "channel batches (algo.b1 + algo.b2, scenario.n_links)": 4.0 * F64 * max(B, AIR_BLOCK) * N * N,
        "evaluation channels (run.eval_sequences x run.eval_slots, scenario.n_links)": 3.0 * F64 * E * S * N * N,
        f"policy activations in evaluation ({keys}, run.eval_sequences)": 3.0 * F64 * E * N * widest,
    }
    if cfg.run.method != "proposed":
        parts["autograd activations (algo.b1 + algo.b2, policy.hidden, scenario.n_links)"] = \
            4.0 * F64 * B * sum(sum(sz) for sz in sizes)
    if cfg.policy.input_norm:
        parts["input normalisation (scenario.n_links)"] = 3.0 * F64 * NORM_SLOTS * N * N
    return parts


def _validate_real_clock(cfg: ZOConfig) -> None:
    if cfg.run.method != "proposed" or cfg.run.backend != "ray":
        raise ConfigError("run.clock=real needs run.method=proposed and run.backend=ray (links as actors on the "
                            "wall clock)")
    if cfg.algo.update == "sync":
        raise ConfigError("run.clock=real needs algo.update=async or graph: on the wall clock d_j^k may arrive "
                            "after link i's update k, which eq. (7) has no term for (eq. (8) uses it as stale)")


def max_delay_bound(cfg: ZOConfig) -> int:
    """Upper bound of a message delay in slots (exponential delays are not bounded: treated as 3 means)."""
    a = cfg.algo
    extra = a.jitter if a.delay_kind == "uniform" else (3 * a.jitter if a.delay_kind == "exponential" else 0)
    return int(a.delay + extra)


def hidden_per_link(cfg: ZOConfig) -> list[tuple[int, ...]]:
    """[N] hidden sizes of each link's MLP."""
    N = cfg.scenario.n_links
    if not cfg.policy.per_link_hidden.strip():
        return [tuple(cfg.policy.hidden)] * N
    parts = cfg.policy.per_link_hidden.split(";")
    try:
        out = [tuple(int(x) for x in p.split(",") if x.strip()) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"policy.per_link_hidden: expected e.g. '10;10,10;8', got "
                            f"{cfg.policy.per_link_hidden!r}") from exc
    if len(out) != N or any(any(h < 1 for h in o) for o in out):
        raise ConfigError(f"policy.per_link_hidden: expected {N} ';'-separated lists of sizes >= 1, "
                            f"got {cfg.policy.per_link_hidden!r}")
    return out


def specs(cfg: ZOConfig) -> list[MLPSpec]:
    norm = _norm(cfg.scenario, cfg.policy.inputs, cfg.policy.caused) if cfg.policy.input_norm else ()
    return [MLPSpec.for_links(cfg.scenario.n_links, h, cfg.policy.inputs, cfg.policy.logit_bound, norm,
                              cfg.policy.out_bias, tuple(cfg.policy.features), cfg.policy.caused,
                              cfg.policy.param_bound)
            for h in hidden_per_link(cfg)]


@functools.lru_cache(maxsize=32)
def _norm(sc: ZOScenarioConfig, inputs: str, caused: str = "each") -> tuple[tuple[float, ...], ...]:
    """Input normalisation constants of the channel model (4096 slots of a fixed stream, not the run's seed)."""
    cfg = ZOConfig(scenario=sc)
    G = scenario(cfg).sample(4096, rng_for(0, ZoStream.NORM)).G
    return feature_norm(G, sc.noise_w, sc.p_max_w, inputs, caused)


def scenario(cfg: ZOConfig) -> Scenario:
    s = cfg.scenario
    return Scenario.preset("links", n_links=s.n_links, link_noise_w=s.noise_w, link_p_max_w=s.p_max_w,
                           link_path_loss=tuple(float(c) for c in s.path_loss), link_channel=s.channel)


def hyper(cfg: ZOConfig) -> ZOHyper:
    a = cfg.algo
    return ZOHyper(mu=a.mu, gamma0=a.gamma0, gamma_tilde=a.gamma_tilde, b1=a.b1, b2=a.b2, utility=a.utility,
                   layer_scale=tuple(float(c) for c in a.layer_scale))


def neighbours(cfg: ZOConfig) -> list[list[int]]:
    N = cfg.scenario.n_links
    if cfg.algo.graph == "full":
        return fully_connected(N)
    return random_connected_graph(N, cfg.algo.max_degree, rng_for(cfg.run.seed, ZoStream.GRAPH))


def d_max(cfg: ZOConfig, nb: list[list[int]]) -> int:
    """D_max: iterations an entry stays usable (graph diameter by default, + 1 with asynchrony)."""
    if cfg.algo.d_max >= 0:
        return cfg.algo.d_max
    late = cfg.algo.asynchrony > 0 or cfg.algo.delay + cfg.algo.jitter > 0 or cfg.run.clock == "real"
    return diameter(nb) + (1 if late else 0)


def offsets(cfg: ZOConfig) -> list[int]:
    """[N] start offset of every link in slots; max offset = asynchrony % of B (paper 2 Sec. IV)."""
    N = cfg.scenario.n_links
    B = cfg.algo.b1 + cfg.algo.b2
    top = int(round(cfg.algo.asynchrony / 100.0 * B))
    if top == 0:
        return [0] * N
    if cfg.algo.offsets == "linspace":
        return [int(round(v)) for v in np.linspace(0, top, N)]
    g = rng_for(cfg.run.seed, ZoStream.OFFSET)
    o = g.integers(0, top + 1, size=N)
    o[g.permutation(N)[:2]] = [0, top]
    return [int(v) for v in o]


def link_model(cfg: ZOConfig) -> LinkModel:
    """Delay / jitter / loss of every d message (slots on the logical clock, seconds on the real one)."""
    a = cfg.algo
    return LinkModel(kind=a.delay_kind, delay=a.delay, jitter=a.jitter, drop_prob=a.drop_prob)


def link_setups(cfg: ZOConfig) -> list[LinkSetup]:
    """What every link's process needs (its policy, hyper-parameters, graph neighbours, the schedule
    offsets, the link model), in link order."""
    nb = neighbours(cfg)
    dm, sp, hy, off = d_max(cfg, nb), specs(cfg), hyper(cfg), tuple(offsets(cfg))
    return [LinkSetup(i, sp[i], hy, cfg.run.seed, cfg.algo.update, tuple(nb[i]), dm, off, link_model(cfg),
                      cfg.run.clock) for i in range(cfg.scenario.n_links)]
