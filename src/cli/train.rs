//! `genlab train`: a run from a preset and overrides, with a progress bar, checkpoints and
//! the outputs (weights, samples, metrics) written to a folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};

use crate::engine::models::gan::AugmentPolicy;
use crate::engine::models::optim::AdamConfig;
use crate::engine::models::Activation;

use super::*;

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum FamilyArg {
    Ae,
    Vae,
    BetaVae,
    Gan,
    Diffusion,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum ArchArg {
    Mlp,
    Conv,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LossArg {
    Bce,
    Mse,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum GanLossArg {
    NonSaturating,
    Minimax,
    Hinge,
    WganGp,
}

/// A GAN's DiffAugment policy (see [`AugmentPolicy`]).
#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum AugmentArg {
    Translation,
    TranslationCutout,
}

impl From<AugmentArg> for AugmentPolicy {
    fn from(a: AugmentArg) -> Self {
        match a {
            AugmentArg::Translation => AugmentPolicy::Translation,
            AugmentArg::TranslationCutout => AugmentPolicy::TranslationCutout,
        }
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum ActivationArg {
    Relu,
    LeakyRelu,
    Tanh,
    Gelu,
    Silu,
}

impl From<ActivationArg> for Activation {
    fn from(a: ActivationArg) -> Self {
        match a {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::LeakyRelu => Activation::LeakyRelu,
            ActivationArg::Tanh => Activation::Tanh,
            ActivationArg::Gelu => Activation::Gelu,
            ActivationArg::Silu => Activation::Silu,
        }
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// `builtin` (the digits), `builtin:shapes`, `builtin:shapes2` (sprites with known factors)
    /// or a path to an IDX file, CSV file or image folder.
    #[arg(long, default_value = "builtin")]
    pub data: String,
    #[command(flatten)]
    pub load: LoadArgs,
    /// The model and its training settings: a preset of any family (an unknown name gets the
    /// list, on one line); those for 3×64×64 images, e.g. conv_vae64, expect `--resize 64
    /// --channels 3`.
    #[arg(long, default_value = "mnist_vae")]
    pub preset: String,
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Hidden widths (MLP) or channels (conv), comma-separated, e.g. 400,200.
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    #[arg(long)]
    pub latent: Option<usize>,
    #[arg(long)]
    pub beta: Option<f64>,
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    #[arg(long, value_enum)]
    pub gan_loss: Option<GanLossArg>,
    /// A GAN's discriminator (critic) steps per generator step.
    #[arg(long)]
    pub d_steps: Option<usize>,
    /// WGAN-GP: the gradient penalty on every k-th critic step, weighted kλ.
    #[arg(long)]
    pub gp_every: Option<usize>,
    /// A GAN's target for real images in the cross-entropy (0.9: one-sided label smoothing).
    #[arg(long)]
    pub real_label: Option<f64>,
    /// A conv GAN's discriminator without batch norm (the generator keeps it).
    #[arg(long)]
    pub no_disc_batch_norm: bool,
    /// A GAN's DiffAugment: random translation and cutout of real and generated images before D.
    #[arg(long)]
    pub diff_augment: bool,
    /// A GAN's minibatch standard deviation: D's head also reads its features' spread in groups of 4.
    #[arg(long)]
    pub minibatch_std: bool,
    /// A GAN's DiffAugment policy (turns DiffAugment on): translation, or translation and cutout.
    #[arg(long, value_enum)]
    pub augment: Option<AugmentArg>,
    /// A GAN generator's own hidden activation (DCGAN: relu in G, leaky-relu in D).
    #[arg(long, value_enum)]
    pub g_activation: Option<ActivationArg>,
    /// A GAN discriminator's own learning rate (its Adam betas stay the run's).
    #[arg(long)]
    pub disc_lr: Option<f64>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Threads for the tensor maths (default: 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop after this many steps (for quick runs).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Also save the checkpoint (and metrics.csv) every this many steps, not only at the end.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Measure sample quality (FD, recall, coverage, … against the data; see `genlab
    /// quality`) every this many steps and at the end: logged to metrics.csv as `quality` rows,
    /// printed with the warnings (mode collapse, missing classes).
    #[arg(long)]
    pub quality_every: Option<u64>,
    /// With --quality-every: also keep the checkpoint of the best quality check (most classes
    /// covered, then the lowest FD) in OUT/best; OUT keeps the last step's.
    #[arg(long, requires = "quality_every")]
    pub keep_best: bool,
    /// Output folder for the checkpoint, metrics.csv, samples.png and reconstructions.png.
    #[arg(long)]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// The run configuration a `train` invocation describes.
pub fn train_config(a: &TrainArgs, data: &Dataset) -> anyhow::Result<RunConfig> {
    let mut cfg = preset(&a.preset, data.shape)
        .ok_or_else(|| anyhow!("unknown preset `{}`; presets: {}", a.preset, presets().join(", ")))?;
    crate::engine::config::fit_classes(&mut cfg, data);
    if let Some(f) = a.family {
        let family = match f {
            FamilyArg::Ae => Family::Autoencoder,
            FamilyArg::Vae => Family::Vae,
            FamilyArg::BetaVae => Family::BetaVae,
            FamilyArg::Gan => Family::Gan,
            FamilyArg::Diffusion => Family::Diffusion,
        };
        cfg.model = cfg.model.with_family(family);
    }
    if a.beta.is_some_and(|b| b != 1.0) && cfg.model.family() == Family::Vae {
        cfg.model = cfg.model.with_family(Family::BetaVae);
    }
    let m = &mut cfg.model;
    let family = m.family();
    if let Some(x) = a.arch {
        m.net_mut().arch = match x {
            ArchArg::Mlp => Arch::Mlp,
            ArchArg::Conv => Arch::Conv,
        };
    }
    if let Some(h) = &a.hidden {
        m.net_mut().hidden = h.clone();
    }
    if let Some(l) = a.latent {
        m.net_mut().latent_dim = l;
    }
    if let Some(b) = a.beta {
        match m.beta_mut() {
            Some(beta) => *beta = b,
            None if b == 1.0 => {}
            None => bail!("--beta applies to a VAE or β-VAE, not to a {family}"),
        }
    }
    if let Some(l) = a.loss {
        let loss = match l {
            LossArg::Bce => ReconLoss::Bce,
            LossArg::Mse => ReconLoss::Mse,
        };
        match m.recon_loss_mut() {
            Some(r) => *r = loss,
            None => bail!("--loss (the reconstruction loss) does not apply to a {family}"),
        }
    }
    if let Some(g) = a.gan_loss {
        let loss = match g {
            GanLossArg::NonSaturating => GanLoss::NonSaturating,
            GanLossArg::Minimax => GanLoss::Minimax,
            GanLossArg::Hinge => GanLoss::Hinge,
            GanLossArg::WganGp => GanLoss::WganGp,
        };
        match m.gan_mut() {
            Some(gan) => gan.gan_loss = loss,
            None => bail!("--gan-loss applies to a GAN, not to a {family}"),
        }
    }
    if let Some(e) = a.epochs {
        cfg.train.epochs = e;
    }
    if let Some(b) = a.batch {
        cfg.train.batch_size = b;
    }
    if let Some(lr) = a.lr {
        cfg.optim.lr = lr;
    }
    if let Some(s) = a.seed {
        cfg.train.seed = s;
    }
    let gan_flags = a.d_steps.is_some()
        || a.gp_every.is_some()
        || a.real_label.is_some()
        || a.disc_lr.is_some()
        || a.no_disc_batch_norm
        || a.diff_augment
        || a.minibatch_std
        || a.augment.is_some()
        || a.g_activation.is_some();
    if gan_flags {
        let optim = cfg.optim;
        let Some(gan) = cfg.model.gan_mut() else {
            bail!("--d-steps, --gp-every, --real-label, --disc-lr, --no-disc-batch-norm, --diff-augment, --augment, --minibatch-std and --g-activation apply to a GAN, not to a {family}")
        };
        if let Some(n) = a.d_steps {
            gan.d_steps = n;
        }
        if let Some(k) = a.gp_every {
            gan.gp_every = k;
        }
        if a.no_disc_batch_norm {
            gan.disc_batch_norm = false;
        }
        if a.diff_augment {
            gan.diff_augment = true;
        }
        if a.minibatch_std {
            gan.minibatch_std = true;
        }
        if let Some(p) = a.augment {
            gan.diff_augment = true;
            gan.augment_policy = p.into();
        }
        if let Some(act) = a.g_activation {
            gan.g_activation = Some(act.into());
        }
        if let Some(t) = a.real_label {
            gan.real_label = t;
        }
        if let Some(lr) = a.disc_lr {
            gan.disc_optim = Some(AdamConfig { lr, ..gan.disc_optim.unwrap_or(optim) });
        }
    }
    if let Some(k) = a.compute.kernels {
        cfg.train.kernels = k;
    }
    cfg.train.device = a.compute.device;
    if let Some(t) = a.threads {
        cfg.train.threads = t;
    }
    cfg.validate()?;
    Ok(cfg)
}

pub(super) fn train(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let data = load_data(&a.data, &a.load)?;
    let cfg = train_config(&a, &data)?;
    // Fail now rather than after the training when the results cannot be written.
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create the output folder {}", a.out.display()))?;
    kernels::pool::install(cfg.train.threads, || train_in_pool(a, data, cfg))?
}

fn train_in_pool(a: TrainArgs, data: Arc<Dataset>, cfg: RunConfig) -> anyhow::Result<ExitCode> {
    let family = cfg.model.family();
    let caps = cfg.model.capabilities();
    let name = caps.headline.id();
    let mut s = TrainingSession::new(cfg.clone(), data.clone())?;
    let total = a.max_steps.map_or(s.total_steps(), |m| m.min(s.total_steps()));
    eprintln!(
        "training {} ({} {}, {} parameters) on {} ({} train / {} test images of {})",
        cfg.preset,
        cfg.model.net().arch,
        family,
        s.model().param_count(),
        data.name,
        s.split().train.len(),
        s.split().test.len(),
        data.shape
    );
    eprintln!("computing on {} with the {} kernels", a.compute.device, cfg.train.kernels);
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let mut quality = match a.quality_every.filter(|&k| k > 0) {
        Some(every) => Some(LiveQuality::new(&s, every)?),
        None => None,
    };
    // The family's health rule, as the app applies it (a GAN whose D loss stays near zero).
    let mut health = s.model().health_monitor();
    let mut log = MetricsLog::default();
    // `--keep-best`: the best quality check so far and its step.
    let mut best: Option<(QualityRank, u64)> = None;
    let t0 = Instant::now();
    let mut images = 0usize;
    while s.step_count() < total {
        let r = s.step()?;
        images += r.batch;
        let m = StepMetrics {
            step: r.step,
            epoch: r.epoch,
            losses: r.losses,
            learning_rate: s.model().learning_rate(),
            images_per_sec: r.images_per_sec,
        };
        log.push_step(&m);
        if r.diverged {
            bar.abandon();
            save_outputs(&a.out, &s, &log)?;
            let advice = if r.nonfinite_input { r.divergence_advice() } else { "Try a lower --lr." };
            eprintln!(
                "error: the loss diverged (NaN or infinite) at step {} with learning rate {}; the last good weights are saved in {}. {advice}",
                r.step,
                s.model().learning_rate(),
                a.out.display()
            );
            return Ok(ExitCode::from(EXIT_DIVERGED));
        }
        if let Some(w) = health.observe(&r.losses) {
            say(&bar, format!("warning at step {}: {w}", r.step));
        }
        let rate = images as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        bar.set_position(r.step);
        let headline = |l: &Losses| l.get(caps.headline).unwrap_or(f64::NAN);
        bar.set_message(format!(
            "epoch {}  {name} {:.3}  {:.0} img/s",
            r.epoch + 1,
            headline(&r.losses),
            rate
        ));
        if let Some(e) = &r.epoch_end {
            log.push_epoch(r.step, e);
            let test = e.test.map(|t| format!("{:.3}", headline(&t))).unwrap_or_else(|| "-".into());
            say(
                &bar,
                format!(
                    "epoch {:>3}: train {name} {:.3}  test {name} {test}",
                    e.epoch + 1,
                    headline(&e.train)
                ),
            );
        }
        if let Some(q) = quality.as_mut() {
            if r.step.is_multiple_of(q.every) || r.step == total {
                let rank = q.measure(&s, r.epoch, &mut log, &bar)?;
                if a.keep_best && best.as_ref().is_none_or(|(b, _)| rank.better_than(b)) {
                    let dir = a.out.join("best");
                    checkpoint::save(&dir, s.model(), s.config(), &s.data().source, r.step, Some(&log))?;
                    say(&bar, format!("best quality so far: saved step {} in {}", r.step, dir.display()));
                    best = Some((rank, r.step));
                }
            }
        }
        if a.checkpoint_every.is_some_and(|k| k > 0 && r.step % k == 0 && r.step < total) {
            checkpoint::save(&a.out, s.model(), s.config(), &s.data().source, r.step, Some(&log))?;
            say(&bar, format!("saved checkpoint at step {}", r.step));
        }
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    if let Some(q) = &quality {
        eprintln!(
            "quality every {} steps: {:.0} ms each, {:.1}% of the run's time",
            q.every,
            1000.0 * q.seconds / q.count.max(1) as f64,
            100.0 * q.seconds / secs.max(1e-9)
        );
    }
    save_outputs(&a.out, &s, &log)?;
    if let Some((rank, step)) = &best {
        eprintln!(
            "best quality check: step {step} (classes {}, FD {:.1}), kept in {}",
            rank.covered,
            rank.fd,
            a.out.join("best").display()
        );
    }
    eprintln!(
        "{} steps in {secs:.1} s ({:.0} images/s); wrote {}",
        s.step_count(),
        images as f64 / secs.max(1e-9),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--quality-every`: the reference, prepared once, and what the evaluations cost.
struct LiveQuality {
    ctx: crate::engine::quality::QualityContext,
    every: u64,
    seconds: f64,
    count: usize,
}

impl LiveQuality {
    fn new(s: &TrainingSession, every: u64) -> anyhow::Result<Self> {
        use crate::engine::quality;
        let t0 = Instant::now();
        let net = quality::feature_net(s.data(), s.split(), &mut |m| eprintln!("{m}"))?;
        let n = crate::engine::protocol::LIVE_QUALITY_SAMPLES;
        let ctx = quality::QualityContext::new(s.data(), s.split(), net, n, 0)?;
        eprintln!(
            "sample quality every {every} steps on {} samples ({}; reference ready in {:.1} s)",
            ctx.n,
            ctx.net.describe(),
            t0.elapsed().as_secs_f64()
        );
        Ok(Self { ctx, every, seconds: 0.0, count: 0 })
    }

    /// Measures the model now, logs the figures and prints them with any warnings; returns
    /// what `--keep-best` ranks checks by.
    fn measure(
        &mut self,
        s: &TrainingSession,
        epoch: usize,
        log: &mut MetricsLog,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<QualityRank> {
        use crate::engine::quality;
        let t0 = Instant::now();
        let seed = s.config().train.seed ^ 0x0a11_7e57;
        let r = self.ctx.score_model(s.model(), seed)?;
        self.seconds += t0.elapsed().as_secs_f64();
        self.count += 1;
        let step = s.step_count();
        log.push_quality(crate::engine::metrics::QualityRow::new(epoch, step, &r));
        let (m, f) = (&r.samples.metrics, &r.floor.metrics);
        let classes = r.samples.classes.as_ref().map_or(String::new(), |c| {
            format!("  confident {:.0}%  classes {}/{}", 100.0 * c.confident, c.covered, c.histogram.len())
        });
        say(
            bar,
            format!(
                "quality at step {step}: FD {:.1} (floor {:.1})  precision {:.2}  recall {:.2}  coverage {:.2}{classes}",
                m.fd, f.fd, m.precision, m.recall, m.coverage
            ),
        );
        for w in quality::warnings(&r) {
            say(bar, format!("warning: {w}"));
        }
        Ok(QualityRank { covered: r.samples.classes.as_ref().map_or(0, |c| c.covered), fd: m.fd })
    }
}

/// How `--keep-best` orders quality checks: more classes covered first (without labels, all
/// tie at 0), then the lower Fréchet distance.
#[derive(Clone, Copy, Debug)]
struct QualityRank {
    covered: usize,
    fd: f64,
}

impl QualityRank {
    fn better_than(&self, other: &QualityRank) -> bool {
        self.covered > other.covered || (self.covered == other.covered && self.fd < other.fd)
    }
}

/// A line of progress above the bar, or on stderr when there is no bar to draw it above.
fn say(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Writes the checkpoint, metrics.csv, samples.png and (AE/VAE) reconstructions.png.
fn save_outputs(out: &Path, s: &TrainingSession, log: &MetricsLog) -> anyhow::Result<()> {
    checkpoint::save(out, s.model(), s.config(), &s.data().source, s.step_count(), Some(log))?;
    s.sample(64, 1.0, s.config().train.seed)?.save_grid_png(&out.join("samples.png"), 8)?;
    let test: Vec<usize> = s.split().test.iter().take(32).copied().collect();
    let idx = if test.is_empty() { s.split().train.iter().take(32).copied().collect() } else { test };
    if let Some((orig, rec)) = s.reconstruct(&idx)? {
        reconstruction_rows(&orig, &rec, 8).save_grid_png(&out.join("reconstructions.png"), 8)?;
    }
    Ok(())
}
