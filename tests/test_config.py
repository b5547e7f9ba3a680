"""Composition of every group option, validation of bad values, and the config hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf.errors import ConfigKeyError, ValidationError

from tests.conftest import compose_cfg
from vgsweep.app import CONF_DIR
from vgsweep.config import ConfigError, config_hash, group_options, validate

GROUPS = ["activation", "depth", "regime", "init", "dataset", "optimizer", "model", "vgg_row", "paper_column"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((Path(CONF_DIR) / g).glob("*.yaml"))]


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_validates(group, option):
    cfg = compose_cfg([f"{group}={option}", "device=cpu"])
    validate(cfg)
    if group == "depth":
        assert cfg.model.depth == int(option) == len(cfg.model.hidden)
    elif group == "dataset":
        assert cfg.data.name == option
    elif group == "model":
        assert cfg.model.family == ("mlp" if option == "mlp" else "vgg")
        assert option == "mlp" or (cfg.model.name == option and "depth" not in cfg.model)
    elif group == "paper_column":  # the column's net, with the loss its original script had
        assert cfg.model.depth == int(option) == len(cfg.model.hidden)
        assert cfg.model.double_softmax is (option == "5")
    elif group == "vgg_row":
        assert cfg.model.family == "vgg" and option.startswith(cfg.model.name)
        assert cfg.optimizer.lr == (1e-2 if option.endswith("lr1e-2") else 1e-3)
    else:
        assert cfg[group].name == option


def test_defaults_reproduce_the_original_code():
    cfg = compose_cfg(["regime=gna_bn"])
    assert cfg.seed == 42 and cfg.train.epochs == 100 and cfg.init.name == "xavier"
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 3e-4 and cfg.optimizer.momentum == 0.9
    gn, bn = cfg.regime.grad_noise, cfg.regime.bn
    assert gn.enabled and gn.eta == 1.0 and gn.gamma == 0.55
    assert gn.unit.value == "epoch" and gn.gives.value == "std"
    assert bn.placement.value == "last" and bn.mode.value == "frozen" and bn.eps == 1e-3
    assert cfg.model.double_softmax is False
    assert cfg.activation.negative_slope == 0.2
    five = compose_cfg(["depth=5"])
    assert list(five.model.hidden) == [512, 512, 256, 256, 128] and five.train.batch_size == 512
    two = compose_cfg([])
    assert list(two.model.hidden) == [512, 512] and two.train.batch_size == 1024


@pytest.mark.parametrize("override,key,accepted", [
    ("train.epochs=0", "train.epochs", "positive int"),
    ("train.batch_size=-4", "train.batch_size", "positive int"),
    ("optimizer.lr=-0.1", "optimizer.lr", "positive float"),
    ("optimizer.momentum=1.5", "optimizer.momentum", "[0, 1)"),
    ("model.hidden=[]", "model.hidden", "non-empty list"),
    ("model.hidden=[512,0]", "model.hidden[1]", "positive int"),
    ("model.hidden=[512,512,512]", "model.depth", "len(model.hidden) = 3"),
    ("activation.name=sigmoidd", "activation.name", "logistic"),
    ("init.name=glorot", "init.name", "xavier"),
    ("init.gain=0", "init.gain", "positive float"),
    ("init.gain=nan", "init.gain", "positive float (NaN and inf are not)"),
    ("regime.grad_noise.eta=-1", "regime.grad_noise.eta", ">= 0"),
    ("regime=wn init=zero", "init.name", "xavier, he or normal"),
    ("tracking.stale_after_s=100", "tracking.stale_after_s", "more than 2 x tracking.heartbeat_s = 120"),
    ("tracking.heartbeat_s=0", "tracking.heartbeat_s", "positive float"),
    ("tracking.flush_s=-1", "tracking.flush_s", "positive float"),
    ("data.input_noise_std=-0.1", "data.input_noise_std", ">= 0"),
    ("device=tpu", "device", "auto, cpu"),
    ("data.limit_train=0", "data.limit_train", "positive int"),
    # keys the schema lacks, added with Hydra's `+`: vgsweep would read none of them
    ("+foo=1", "foo", "a key of the config: activation,"),
    ("+train.epoch=3", "train.epoch", "did you mean train.epochs?"),
    ("+regime.grad_noise.x=1", "regime.grad_noise.x", "a key of regime.grad_noise: enabled, eta"),
    # a group of unknown keys is named as written; a key of that name elsewhere is the hint
    ("+train.noise.eta=1", "train.noise.eta", "a key of train: batch_size, drop_last, epochs, shuffle_buffer. "
                                              "did you mean regime.grad_noise.eta?"),
    ("model=vgg08 +model.foo=1", "model.foo", "a key of model: blocks_per_stage"),
    # a key of the other model family is said to be one, not offered as its own hint
    ("model=vgg08 +model.hidden=[8]", "model.hidden", "model.hidden (the MLP's widths) is a key of model.family=mlp only"),
    ("+model.filters=[8]", "model.filters",
     "residual, residual_scale, width. model.filters is a key of model.family=vgg only"),
    ("model=vgg08 +model.width=8", "model.width", "model.width (the MLP's widths) is a key of model.family=mlp only"),
    ("model.depth=10001 model.width=8", "model.depth", "a positive int of at most 10000"),
    ("model.width=0", "model.width", "positive int"),
    ("model.hidden=abc", "model.hidden", "a list of ints"),
    ("~seed", "seed", "seed=(deleted) is not accepted; expected a value"),  # Hydra's ~ deletes a key
    ("~diagnostics", "diagnostics", "~diagnostics removed it"),
    # what a job returns to a sweeper: a metric it ends with; a validation one only with a split
    ("objective=accuracy", "objective", "one of best_val_acc, test_acc,"),
    ("objective=best_val_acc", "objective", "without a validation split. set data.val_size"),
    ("checkpoint.every=-1", "checkpoint.every", "an int >= 0"),
    ("diagnostics.verdict.dead_fraction=2", "diagnostics.verdict.dead_fraction", "[0, 1]"),
    ("diagnostics.hist_min=5", "diagnostics.hist_max", "above diagnostics.hist_min=5.0"),
    ("optimizer.schedule.eta_min=1", "optimizer.schedule.eta_min", "at most optimizer.lr"),
    ("data.mean=[0.1,0.2] data.std=[1,1]", "data.mean", "1 values, one per channel"),
    ("model=vgg08 regime=gna_bn", "regime.name", "model.bn and model.residual"),
    # a blank place (a shell variable not set: tracking.uri=$STORE) was taken for null, or for the current folder
    ("tracking.uri=", "tracking.uri",
     "tracking.uri='' is not accepted; expected a URI, or null for MLFLOW_TRACKING_URI"),
    ("checkpoint.dir=", "checkpoint.dir", "expected a folder, or null for checkpoints/ beside the store"),
    ("tracking.artifact_root=", "tracking.artifact_root", "expected a folder, or null for mlartifacts/"),
    # each VGG stage halves the image: past 1x1 its pool failed in the first step, after the runs were made
    ("model=vgg08 model.stages=5", "model.stages", "at most 4 for 28x28 images. each stage ends in a 2x2 average "
                                                    "pool that halves them: 28 -> 14 -> 7 -> 3 -> 1"),
    ("model=vgg08 model.stages=6 data.pad_to=32", "model.stages", "at most 5 for 32x32 images"),
    # a padding as large as the image: crops that hold none of it (40 for 4), trained without a word
    ("model=vgg08 data.augment.crop_padding=28", "data.augment.crop_padding", "at most 27 for mnist's 28x28 images"),
    ("model=vgg08 data.pad_to=32 data.augment.crop_padding=40", "data.augment.crop_padding", "at most 31 for mnist's"),
    # NaN and inf, everywhere a number is (through the CLI: tests/test_bad_input.py, a few of them)
    ("optimizer.lr=inf", "optimizer.lr", "a positive float (NaN and inf are not)"),
    ("init.std=inf", "init.std", "(NaN and inf are not)"),
    ("regime.bn.eps=nan", "regime.bn.eps", "(NaN and inf are not)"),
    ("regime=gna regime.grad_noise.eta=nan", "regime.grad_noise.eta", "(NaN and inf are not)"),
    ("regime.grad_noise.gamma=-inf", "regime.grad_noise.gamma", "(NaN and inf are not)"),
    ("data.input_noise_std=nan", "data.input_noise_std", "(NaN and inf are not)"),
    ("tracking.heartbeat_s=nan", "tracking.heartbeat_s", "(NaN and inf are not)"),
    ("tracking.stale_after_s=inf", "tracking.stale_after_s", "(NaN and inf are not)"),
    ("tracking.retry_s=nan", "tracking.retry_s", "(NaN and inf are not)"),
    ("tracking.flush_s=inf", "tracking.flush_s", "(NaN and inf are not)"),
    ("diagnostics.verdict.vanish_ratio=nan", "diagnostics.verdict.vanish_ratio", "(NaN and inf are not)"),
    ("activation.negative_slope=inf", "activation.negative_slope", "(NaN and inf are not)"),
])
def test_bad_values_name_key_value_and_what_is_accepted(override, key, accepted):
    cfg = compose_cfg([*override.split(), "device=cpu"] if not override.startswith("device") else [override])
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert e.value.key == key
    assert key in str(e.value) and accepted in str(e.value)


@pytest.mark.parametrize("override,exc,line", [
    ("activation=sigmoidd", ConfigCompositionException,
     "activation=sigmoidd is not accepted; expected one of elu, gelu, identity, leaky_relu, logistic, relu, swish, tanh"),
    ("depth=7", ConfigCompositionException, "depth=7 is not accepted; expected one of 2, 5, 10, 20, 30"),
    ("model=vgg99", ConfigCompositionException, "expected one of mlp, vgg08, vgg38, vgg38_bn, vgg38_bn_rc, vgg38_rc"),
    ("train.epoch=3", ConfigKeyError,
     "train.epoch=3 is not accepted; expected a key of train: batch_size, drop_last, epochs"),
    ("train.epochz=3", ConfigKeyError, ". did you mean train.epochs?"),
    ("train.lr=0.1", ConfigKeyError, "train.lr=0.1 is not accepted; expected a key of train: batch_size, drop_last, "
                                     "epochs, shuffle_buffer. did you mean optimizer.lr?"),
    ("train.noise.eta=inf", ConfigKeyError, "train.noise.eta=inf is not accepted; expected a key of train: batch_size, "
                                            "drop_last, epochs, shuffle_buffer. did you mean regime.grad_noise.eta?"),
    ("optimizer.gamma=1", ConfigKeyError, "did you mean regime.grad_noise.gamma?"),
    ("model=vgg38 model.hidden=[10]", ConfigKeyError, "entry_bn, family, filters, name, residual, stages. "
                                                      "model.hidden is a key of model.family=mlp only"),
    ("model=vgg38 model.hiden=[10]", ConfigKeyError, "did you mean model.hidden (a key of model.family=mlp only)?"),
    ("model.hiden=[10]", ConfigKeyError, "hidden, residual, residual_scale, width. did you mean model.hidden?"),
    ("seedd=3", ConfigKeyError, "seedd=3 is not accepted; expected a key of the config: activation,"),
    ("train.epochs=abc", ValidationError, "train.epochs='abc' is not accepted; expected an int"),
    ("seed=1.5", ValidationError, "seed=1.5 is not accepted; expected an int"),
    ("optimizer.lr=fast", ValidationError, "optimizer.lr='fast' is not accepted; expected a number"),
    ("train.drop_last=maybe", ConfigCompositionException, "train.drop_last='maybe' is not accepted; expected true or false"),
    # OmegaConf would read these as a bool (3 and yes as true, 0 as false); vgsweep takes true or false
    ("model.double_softmax=3", ConfigCompositionException, "model.double_softmax=3 is not accepted; expected true or false"),
    ("train.drop_last=0", ConfigCompositionException, "train.drop_last=0 is not accepted; expected true or false"),
    ("diagnostics.enabled=yes", ConfigCompositionException, "diagnostics.enabled='yes' is not accepted"),
    ("hydra.launcher.dry_run=1", ConfigCompositionException, "hydra.launcher.dry_run=1 is not accepted"),
    ("regime.grad_noise.unit=minute", ValidationError,
     "regime.grad_noise.unit='minute' is not accepted; expected one of epoch, step"),
    ("regime.bn.mode=sometimes", ValidationError, "expected one of frozen, batch, layer"),
    ("model.hidden=[a,b]", ValidationError, "model.hidden=[a,b] is not accepted; expected a list whose items are each an int"),
    ("data.mean=3", ValidationError, "data.mean=3 is not accepted; expected a list"),
    ("data=fashion_mnist", ValidationError, "data='fashion_mnist' is not accepted; expected one of its keys set on its "
     "own (key.subkey=value). did you mean dataset=fashion_mnist?"),
    ("activation=[relu", HydraException, "cannot parse the override 'activation=[relu'"),
    # a list selects several options of one group, merged: it trained one tanh net; [] the schema's logistic
    ("activation=[relu,tanh]", ConfigCompositionException, "activation=[relu,tanh] is not accepted; expected one "
     "option of activation: elu, gelu, identity, leaky_relu, logistic, relu, swish, tanh. a list selects every option "
     "in it, merged into one config (tanh's settings over the others'): to train each, sweep them: vgsweep -m "
     "activation=relu,tanh"),
    ("activation=[]", ConfigCompositionException, "an empty list selects none"),
    ("depth=[5]", ConfigCompositionException, "one option is written without brackets: depth=5"),
    ("experiment=[paper_table1,lr_search]", ConfigCompositionException,
     "run each study on its own (vgsweep experiment=paper_table1; vgsweep experiment=lr_search)"),
    # no option of a group the schema needs: ~activation trained the schema's default (logistic); null was a traceback
    ("~activation", ConfigCompositionException, "activation=(deleted) is not accepted; expected one option of "
     "activation: elu, gelu, identity, leaky_relu, logistic, relu, swish, tanh. with none, the schema's built-in "
     "defaults would train"),
    ("~regime", ConfigCompositionException, "regime=(deleted) is not accepted; expected one option of regime:"),
    ("init=null", ConfigCompositionException, "init=null is not accepted; expected one option of init: he, normal,"),
    ("vgg_row=null", ConfigCompositionException, "vgg_row=null is not accepted; expected one option of vgg_row: vgg08, "
     "vgg38,"),
    ("activation=relu,tanh", HydraException, "activation=relu,tanh lists values to sweep over, in a single run; "
     "expected -m"),
    ("~train.epochs", HydraException, "train.epochs=(deleted) is not accepted; expected a value"),
    # an experiment file sets a key (the search's seed) that the sampler chosen on the command line lacks
    ("experiment=lr_search hydra/sweeper/sampler=grid", ConfigCompositionException,
     "hydra.sweeper.sampler.seed (set in conf/experiment/lr_search.yaml) is not a key of the chosen Optuna sampler; "
     "expected a sampler that has it: hydra/sweeper/sampler=cmaes,motpe,nsgaii,random,tpe. grid has no seed"),
    ("hydra/sweeper=ax", ConfigCompositionException,
     "hydra/sweeper=ax is not accepted; expected one of basic, optuna. Hydra's ax sweeper is a plugin: pip install "
     "hydra-ax-sweeper"),
])
def test_composition_refusals_become_one_line_naming_key_value_and_what_is_accepted(override, exc, line):
    """Hydra refuses these while composing, in many lines; vgsweep says each in one (app.py exits 2 with it)."""
    from vgsweep.hydra_compat import bad_input_message

    with pytest.raises((exc, HydraException)) as e:
        compose_cfg(override.split())
    message = bad_input_message(e.value)
    assert message is not None and "\n" not in message, (override, str(e.value))
    assert message.startswith("invalid config: ") and line in message, message


def test_a_group_empty_by_default_may_be_emptied_and_a_needed_one_may_not():
    """`~experiment` after an experiment (or `~vgg_row`) selects none, as the default does; the groups the
    schema needs an option of are those conf/config.yaml sets."""
    from vgsweep.hydra_compat import _needed_groups

    assert _needed_groups() == {"dataset", "depth", "model", "activation", "regime", "init", "optimizer"}
    assert compose_cfg(["experiment=paper_table1", "~experiment"]).study == compose_cfg([]).study
    assert compose_cfg(["~vgg_row", "~paper_column"]).model.double_softmax is False


def test_config_hash_ignores_where_and_tracks_what():
    base = compose_cfg(["device=cpu"])
    assert config_hash(base) == config_hash(compose_cfg(["device=auto", "data.root=/elsewhere",
                                                         "tracking.uri=sqlite:////tmp/x.db"]))
    assert config_hash(base) != config_hash(compose_cfg(["seed=43"]))
    assert config_hash(base) != config_hash(compose_cfg(["regime=gna"]))


def test_a_float_that_hydras_range_leaves_a_rounding_away_from_a_short_decimal_is_that_decimal():
    """`eta=range(0.1,0.5,0.1)` gives 0.30000000000000004 (Hydra adds the step in floats): its job is the
    config `eta=0.3`, one hash (a later `eta=0.3` is skipped as done) and 0.3 in the params; a list's
    floats too. An Optuna trial's many digits, ints, bools and other strings stay as they are."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from vgsweep.config import settle, short_decimal
    from vgsweep.jobs import Job

    swept = list(OverridesParser.create().parse_override("x=range(0.5,0,-0.05)").sweep_iterator())
    assert 0.30000000000000004 in list(OverridesParser.create().parse_override("x=range(0.1,0.5,0.1)")
                                       .sweep_iterator())
    assert [short_decimal(x) for x in swept] == [round(0.5 - 0.05 * i, 2) for i in range(10)]  # 0.049999999999999975
    for x in (0.01567667719550607, 1 / 3, 1e-300, 5e-324, 0.0, -0.0, 1e22, 2, True, "0.30000000000000004"):
        assert short_decimal(x) is x
    assert short_decimal(-0.30000000000000004) == -0.3 and short_decimal(1.0000000000000002) == 1.0

    def job(*o):
        return Job(compose_cfg(["device=cpu", "regime=gna", *o]))

    noisy = job("regime.grad_noise.eta=0.30000000000000004", "data.mean=[0.30000000000000004]",
                "data.std=[0.7000000000000001]")
    assert noisy.cfg.regime.grad_noise.eta == 0.3 and list(noisy.cfg.data.mean) == [0.3]
    assert noisy.key() == job("regime.grad_noise.eta=0.3", "data.mean=[0.3]", "data.std=[0.7]").key()
    assert job("optimizer.lr=0.01567667719550607").cfg.optimizer.lr == 0.01567667719550607
    assert job("optimizer.lr=0.01567667719550607").key() != job("optimizer.lr=0.0156766771955").key()
    o = ["regime.grad_noise.eta=0.30000000000000004", "optimizer.lr=0.01567667719550607", "seed=1", "x=0.3.1"]
    assert Job(compose_cfg(["device=cpu", "regime=gna", *o[:3]]), overrides=o).overrides == [
        "regime.grad_noise.eta=0.3", *o[1:]]  # as its label, the dry run and the run's overrides tag say it
    cfg = compose_cfg(["device=cpu", "optimizer.lr=0.30000000000000004"])
    settle(cfg)  # the single run's task call does the same as its Job
    assert cfg.optimizer.lr == 0.3 and config_hash(cfg) == config_hash(compose_cfg(["device=cpu", "optimizer.lr=0.3"]))


def test_a_setting_that_changes_nothing_in_a_run_does_not_change_its_hash():
    """Inert settings (config.inert_keys) hash at their defaults: one config, trained once."""
    h = lambda *o: config_hash(compose_cfg(["device=cpu", *o]))  # noqa: E731
    assert h() == h("init.std=0.01") == h("init=xavier", "init.std=0.5")
    assert h("init=normal") != h("init=normal", "init.std=0.01")
    assert h("init=zero") == h("init=zero", "init.gain=4") and h() != h("init.gain=4")
    assert h() == h("regime.grad_noise.eta=0.3", "regime.grad_noise.gamma=0.9")  # baseline: no noise
    assert h("regime=gna") != h("regime=gna", "regime.grad_noise.eta=0.3")
    assert h("regime=gna", "regime.grad_noise.eta=0") == h("regime=gna", "regime.grad_noise.eta=0",
                                                           "regime.grad_noise.unit=step")
    assert h("activation=relu") == h("activation=relu", "activation.negative_slope=0.5")
    assert h("activation=leaky_relu") != h("activation=leaky_relu", "activation.negative_slope=0.5")
    assert h() == h("regime.bn.mode=batch", "regime.bn.eps=0.1")  # no BN layer
    assert h("regime=gna_bn") != h("regime=gna_bn", "regime.bn.eps=0.1")
    assert h("regime=gna_bn") == h("regime=gna_bn", "regime.bn.momentum=0.5")  # frozen: no running statistics
    assert h() == h("optimizer.schedule.eta_min=0.1")  # constant rate
    assert h() == h("optimizer.eps=0.1", "optimizer.beta1=0.5") and h() != h("optimizer.momentum=0.5")  # SGD
    assert h("optimizer=adam") == h("optimizer=adam", "optimizer.momentum=0.5")
    assert h("optimizer=adam") != h("optimizer=adam", "optimizer.eps=0.1")
    assert h() == h("data.split_seed=3") and h("data.val_size=100") != h("data.val_size=100", "data.split_seed=3")


def test_a_width_gives_every_layer_of_any_depth_and_is_the_config_of_its_widths_written_out():
    """`model.depth=50 model.width=256`: fifty hidden layers of 256 (where model.hidden would be a list of fifty),
    made so as its Job is (settle), before it is hashed, recorded or trained: `depth=30` and `model.depth=30
    model.width=256` are one config, one hash. --cfg job validates it as composed (hidden not yet made)."""
    from vgsweep.jobs import Job

    job = Job(compose_cfg(["device=cpu", "model.depth=50", "model.width=256"]))
    assert list(job.cfg.model.hidden) == [256] * 50 and job.cfg.model.depth == 50
    validate(job.cfg)
    assert job.key() == Job(compose_cfg(["device=cpu", "depth=30", "model.width=256", "model.depth=50",
                                         "train.batch_size=1024"])).key()  # depth=2's batch, as the first
    assert Job(compose_cfg(["device=cpu", "depth=30"])).key() == Job(compose_cfg(
        ["device=cpu", "model.depth=30", "model.width=256", "train.batch_size=512"])).key() != Job(compose_cfg(
            ["device=cpu", "model.depth=30", "model.width=128", "train.batch_size=512"])).key()
    assert job.name == "mnist-d50-logistic-baseline-s42"
    validate(compose_cfg(["device=cpu", "model.depth=7", "model.width=64"]))  # as composed: hidden is depth 2's
    with pytest.raises(ConfigError, match=r"model.depth=7 is not accepted; expected len\(model.hidden\) = 2. set "
                                          r"both, or pick a depth=... option, or give every layer one width: "
                                          r"model.width=512"):
        validate(compose_cfg(["device=cpu", "model.depth=7"]))
    huge = Job(compose_cfg(["device=cpu", "model.depth=10000000000", "model.width=8"]))  # no list of 1e10 made
    assert len(huge.cfg.model.hidden) == 2
    with pytest.raises(ConfigError, match="model.depth=10000000000 is not accepted; expected a positive int of at "
                                          "most"):
        validate(huge.cfg)


OPTIONS = [[]] + [[f"{g}={o}"] for g in ("activation", "init", "regime", "optimizer", "model", "dataset", "depth",
                                         "paper_column", "vgg_row") for o in group_options(g)]


def test_every_option_leaves_its_inert_settings_at_the_schemas_defaults():
    """What keeps config hashes as they were when inert settings began to hash at their defaults
    (config.effective): no option of conf/ or study file sets one to anything else, so only a config
    given such a value by hand hashes anew (as the config it computes)."""
    from vgsweep.config import flatten, inert_defaults, inert_keys, to_container

    for overrides in OPTIONS + [[f"experiment={e}", "hydra.mode=RUN"] for e in EXPERIMENTS]:
        flat = flatten(to_container(compose_cfg([*overrides, "device=cpu"])))  # as the option test: composed once
        for k in inert_keys({k: str(v) for k, v in flat.items()}):
            assert k not in flat or flat[k] == inert_defaults()[k], (overrides, k, flat[k])


def test_keys_added_later_keep_older_hashes_at_their_old_behaviour():
    """regime.weight_norm came after runs were recorded: at false, a config hashes as it did before."""
    from omegaconf import OmegaConf

    base = compose_cfg(["regime=gna"])
    before = OmegaConf.to_container(base, resolve=True)
    del before["regime"]["weight_norm"]
    assert config_hash(base) == config_hash(OmegaConf.create(before))
    assert config_hash(base) != config_hash(compose_cfg(["regime=gna", "regime.weight_norm=true"]))
    assert config_hash(compose_cfg(["regime=wn"])) != config_hash(compose_cfg(["regime=baseline"]))
    # init.gain came later still: 1 is the behaviour from before it; any other value is a new run
    assert config_hash(base) == config_hash(compose_cfg(["regime=gna", "init.gain=1"]))
    assert config_hash(base) != config_hash(compose_cfg(["regime=gna", "init.gain=4"]))
    # model.residual_scale: 1 is the skip as it was; without skips any scale is the same config
    res = compose_cfg(["regime=gna", "model.residual=true"])
    before = OmegaConf.to_container(res, resolve=True)
    del before["model"]["residual_scale"]
    assert config_hash(res) == config_hash(OmegaConf.create(before))
    assert config_hash(res) != config_hash(compose_cfg(["regime=gna", "model.residual=true", "model.residual_scale=0.2"]))
    assert config_hash(base) == config_hash(compose_cfg(["regime=gna", "model.residual_scale=0.2"]))
    # regime.wn_init: weights is weight norm as it was; without weight norm either is the same config
    wn = compose_cfg(["regime=wn"])
    before = OmegaConf.to_container(wn, resolve=True)
    del before["regime"]["wn_init"]
    assert config_hash(wn) == config_hash(OmegaConf.create(before))
    assert config_hash(wn) != config_hash(compose_cfg(["regime=wn", "regime.wn_init=data"]))
    assert config_hash(base) == config_hash(compose_cfg(["regime=gna", "regime.wn_init=data"]))


EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_study_file_sweeps_over_valid_values(experiment):
    """Each value a study sweeps composes and validates, so a typo fails here, not mid-sweep: in jobs
    as its sweep makes them (every key of the study set), the i-th job taking each key's i-th value
    (its last where it has fewer): every value in one job, as many jobs as the longest list."""
    import yaml

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    spec = yaml.safe_load((Path(CONF_DIR) / "experiment" / f"{experiment}.yaml").read_text())
    assert spec["hydra"]["mode"] == "MULTIRUN"
    params = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in spec["hydra"]["sweeper"]["params"].items()])
    assert any(p.is_sweep_override() for p in params)  # it sweeps something
    values = {}
    for p in params:
        sweep = p.value()  # a list a,b,c; a search's interval(lo, hi) (Optuna's): both ends
        values[p.key_or_group] = [sweep.start, sweep.end] if isinstance(sweep, IntervalSweep) else \
            list(p.sweep_string_iterator()) if p.is_sweep_override() else [p.get_value_element_as_str()]
    for i in range(max(map(len, values.values()))):
        job = [f"{k}={v[min(i, len(v) - 1)]}" for k, v in values.items()]
        try:
            validate(compose_cfg([f"experiment={experiment}", *job, "device=cpu"]))
        except Exception as e:
            raise AssertionError(f"experiment={experiment} {' '.join(job)}: {e}") from e


# Config hashes computed by the version before the engine was opened up to model families
# (git 61d663c): a store made by it must still resume and table, so these may never change.
PINNED_HASHES = {
    (): "f489129041765bba",
    ("depth=5", "activation=swish", "regime=gna_bn"): "f4accbedf73a3c05",
    ("regime=gna", "optimizer=adam", "init=he", "seed=3"): "af688ccf2ac0394f",
    ("regime=wn", "depth=10", "model.residual=true"): "f6a1f9719044337a",
    ("regime=ln", "dataset=fashion_mnist", "train.epochs=3", "data.limit_train=6000"): "231be2a98d4911b2",
    ("regime=gna_bn_batch", "model.double_softmax=true", "activation=leaky_relu"): "000868780669231f",
}


@pytest.mark.parametrize("overrides", sorted(PINNED_HASHES), ids=lambda o: " ".join(o) or "defaults")
def test_config_hashes_of_earlier_versions_stay(overrides):
    assert config_hash(compose_cfg(list(overrides))) == PINNED_HASHES[overrides]


def test_the_readme_documents_every_config_group_option_and_study():
    """README's configuration table names every group of conf/ and each of its options, and its
    studies table has a row per experiment file: a new option cannot land undocumented."""
    readme = (Path(CONF_DIR).parent / "README.md").read_text()
    rows = {ln.split("|")[1].strip().strip("`"): ln for ln in readme.splitlines() if ln.startswith("| `")}
    missing = []
    for group in sorted(p for p in Path(CONF_DIR).iterdir() if p.is_dir()):
        line = rows.get(group.name, "")
        missing += [f"{group.name}={o}" for o in sorted(p.stem for p in group.glob("*.yaml")) if f"`{o}`" not in line]
    missing += [f"studies table: {e}" for e in EXPERIMENTS if e not in rows]
    assert not missing, missing


@pytest.mark.parametrize("text,key,refused", [
    ("model:\n  double_softmax: 1", "model.double_softmax", "1"),
    ("model:\n  double_softmax: 'true'", "model.double_softmax", "'true'"),  # a string, as a quoted override
    ("hydra:\n  launcher:\n    dry_run: 0", "hydra.launcher.dry_run", "0"),
    ("model:\n  double_softmax: true", "model.double_softmax", None),
    ("train:\n  drop_last: yes", "train.drop_last", None),  # YAML 1.1's own bool (the loader's), not a coercion
    ("model:\n  double_softmax: ${diagnostics.enabled}", "model.double_softmax", None),  # checked where it points
])
def test_a_bool_key_in_a_users_config_file_takes_true_or_false(tmp_path, text, key, refused):
    """OmegaConf reads 1, 0, 'true' into a bool field; from a config file of the user's (an experiment
    on hydra.searchpath) vgsweep refuses them as it does on the command line, naming the file."""
    from omegaconf import OmegaConf

    from vgsweep.app import compose

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(f"# @package _global_\n{text}\n")
    overrides = [f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"]
    if refused is None:
        assert OmegaConf.select(compose(overrides), key) is True
        return
    with pytest.raises(ConfigCompositionException) as e:
        compose(overrides)
    assert str(e.value) == (f"invalid config ({tmp_path / 'experiment' / 'mine.yaml'}): {key}={refused} is not "
                            "accepted; expected true or false")


def test_a_key_that_is_one_familys_switch_and_anothers_enum_takes_each_familys_values():
    """model.residual is the MLP's switch (true, false) and VGG's enum (none, processing): the bool
    rule refuses what neither takes and leaves the enum's values to the VGG family (it refused
    `model=vgg08 model.residual=processing` until the rule knew the families apart)."""
    from vgsweep.app import compose
    from vgsweep.hydra_compat import bad_input_message

    assert compose(["model=vgg08", "model.residual=processing"]).model.residual.value == "processing"
    assert compose(["model.residual=true"]).model.residual is True
    with pytest.raises(ConfigCompositionException, match=r"model.residual=1 is not accepted; expected true or false, "
                                                         r"or with the vgg family one of none, processing"):
        compose(["model=vgg08", "model.residual=1"])
    with pytest.raises(ConfigCompositionException) as e:  # the MLP's own schema refuses VGG's value, in one line
        compose(["model.residual=processing"])
    assert bad_input_message(e.value) == "invalid config: model.residual='processing' is not accepted; expected true or false"


@pytest.mark.parametrize("option,hidden", [("5", [512, 512, 256, 256, 128]), ("'2'", [512, 512])])
def test_a_numeric_option_in_an_experiments_defaults_list_names_the_option(tmp_path, option, hidden):
    """`- override /depth: 5` (unquoted) in a user's experiment file selects conf/depth/5.yaml, as
    `depth=5` does on the command line; Hydra 1.3 alone stops with a traceback (an int in a defaults list)."""
    from vgsweep.app import compose

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(f"# @package _global_\ndefaults:\n  - override /depth: {option}\n")
    cfg = compose([f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"])
    assert list(cfg.model.hidden) == hidden


@pytest.mark.parametrize("text,line", [
    ("train:\n  epoch: 3", "train.epoch=3 is not accepted; expected a key of train: batch_size, drop_last, epochs, "
                           "shuffle_buffer. did you mean train.epochs?"),
    ("train:\n  epochs: abc", "train.epochs='abc' is not accepted; expected an int"),
    ("train:\n  noise:\n    eta: 1", "train.noise.eta=1 is not accepted; expected a key of train: batch_size, drop_last, "
                                    "epochs, shuffle_buffer. did you mean regime.grad_noise.eta?"),
    ("model:\n  hidden: [64, x]", "model.hidden[1]='x' is not accepted; expected an int"),
    ("regime:\n  bn:\n    mode: sometimes", "regime.bn.mode='sometimes' is not accepted; expected one of frozen, batch, layer"),
])
def test_a_users_config_file_refused_while_composing_is_one_line_naming_the_file(tmp_path, text, line):
    """What Hydra refuses while it merges a user's experiment file into the schema (an unknown key, a
    wrong type) is vgsweep's one line with the file's path and the value as the file writes it, not
    Hydra's "In 'experiment/mine': ConfigKeyError raised while composing config: ..."."""
    from vgsweep.app import compose
    from vgsweep.hydra_compat import bad_input_message

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(f"# @package _global_\n{text}\n")
    with pytest.raises(HydraException) as e:
        compose([f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"])
    assert bad_input_message(e.value) == f"invalid config ({tmp_path / 'experiment' / 'mine.yaml'}): {line}"


def test_a_blank_output_folder_is_refused_not_taken_for_the_current_one(tmp_path, monkeypatch):
    """hydra.run.dir= or hydra.sweep.dir= (a shell variable not set): Path('') is the current folder, where the
    jobs' folders went; `.` written so is that folder, and taken."""
    from vgsweep.preflight import check_dir

    monkeypatch.chdir(tmp_path)
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        with pytest.raises(ConfigError) as e:
            check_dir(key, " ")
        assert str(e.value).startswith(f"invalid config: {key}=' ' is not accepted; expected a folder. a blank one")
        check_dir(key, ".")


def test_a_folder_check_outlives_another_process_removing_the_folder_it_looked_at(tmp_path, monkeypatch):
    """Two sweeps started together in one folder: the first refused tidies its empty multirun/<date>/
    away while the second checks that its sweep folder can be made inside it. The check then looks
    again from the folder above, instead of calling the vanished folder 'not writable' (seen here in 1
    of 14 runs of the bad-input test, two CLIs at a time)."""
    import os

    from vgsweep import preflight

    mr = tmp_path / "mr"
    mr.mkdir()
    real = os.access
    calls = []

    def access(path, mode):
        if not calls:  # the other process removes mr between the check's exists() and its access()
            mr.rmdir()
        calls.append(path)
        return real(path, mode)

    monkeypatch.setattr(preflight.os, "access", access)
    assert preflight.not_creatable(mr / "123") is None
    assert [Path(c) for c in calls] == [mr, tmp_path]
    (tmp_path / "f").write_text("a file")
    assert preflight.not_creatable(tmp_path / "f") == f"{tmp_path / 'f'} is a file, not a folder"
    assert preflight.not_creatable(tmp_path / "f" / "x") == f"{tmp_path / 'f'} is a file, so no folder can be made inside it"



def test_a_folder_removed_while_it_is_probed_is_looked_past(tmp_path, monkeypatch):
    """The other moment of that race (seen in CI): mr exists at access() and is removed before the probe
    folder is made in it; the real mkdtemp then fails (No such file or directory) and the check looks
    again from the top, rather than refusing the sweep because of another sweep's tidying."""
    import tempfile

    from vgsweep import preflight

    mr = tmp_path / "mr"
    mr.mkdir()
    real = tempfile.mkdtemp
    dirs = []

    def mkdtemp(*a, dir=None, **k):
        if not dirs:
            mr.rmdir()
        dirs.append(Path(dir))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    assert preflight.not_creatable(mr / "123") is None
    assert dirs == [mr, tmp_path]
    assert not mr.exists() and list(tmp_path.iterdir()) == []
    # /proc exists and refuses (for root, with the same ENOENT): that is still a refusal
    assert preflight.not_creatable(Path("/proc/vgsweep-mr")) in (
        "no folder can be made in /proc (No such file or directory)", "/proc is not writable")

@pytest.fixture
def a_v100(monkeypatch):
    """torch as it answers on a machine with one pre-Ampere GPU (this one has none): what check_device asks."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.parametrize("overrides,key,line", [
    # a GPU index the machine does not have: before, every pack failed on its first tensor
    (["device=cuda:1"], "device", "device='cuda:1' is not accepted; expected cuda, cuda:0 or cpu. torch sees 1 CUDA "
                                  "device here"),
    # tf32 there would quietly be fp32, bf16 emulated: the recorded precision would not be what ran
    (["device=cuda", "precision=tf32"], "precision", "precision='tf32' is not accepted; expected fp32 on this GPU. "
     "Tesla V100-SXM2-16GB (compute capability 7.0) has no TF32 or bfloat16 tensor cores"),
    (["precision=bf16"], "precision", "precision='bf16' is not accepted; expected fp32 on this GPU"),  # device=auto
])
def test_device_and_precision_are_checked_against_this_machines_gpus(a_v100, overrides, key, line):
    cfg = compose_cfg(overrides)
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert e.value.key == key and line in str(e.value), str(e.value)
    validate(compose_cfg(["device=cuda:0"]))  # the GPU it has, at fp32


def test_where_the_packs_train_elsewhere_the_gpu_checks_are_left_to_them():
    """On a SLURM login node without a GPU (this machine) tf32 is for the nodes to judge
    (executors.PackJob.check_devices); a precision with device=cpu is refused anywhere."""
    from vgsweep.config import check_device

    cfg = compose_cfg(["precision=tf32"])  # device=auto
    validate(cfg, devices_here=False)
    with pytest.raises(ConfigError, match="torch sees no CUDA device here"):
        check_device(cfg)
    with pytest.raises(ConfigError, match="expected fp32 on the CPU"):
        validate(compose_cfg(["precision=tf32", "device=cpu"]), devices_here=False)
