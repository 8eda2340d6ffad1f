//! The loss components a model reports, named once: [`LossKey`] gives each its id (also the
//! CSV column and the name in logs), its label for people and the plot axis it belongs on;
//! the app's theme gives each its colour by an exhaustive match. [`Losses`] holds one value per
//! key, so a family that reports a new component adds a key here and every table, plot and
//! log that lists components shows it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One loss component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKey {
    /// The quantity minimised by an encoder–decoder: recon (+ β·KL for a VAE), nats per image.
    Loss,
    /// Reconstruction term, nats per image.
    Recon,
    /// KL(q(z|x) ‖ N(0, I)), nats per image.
    Kl,
    /// The discriminator's loss (cross-entropy on real and fake, nats).
    DLoss,
    /// The generator's loss (nats).
    GLoss,
    /// Mean D(x) on real images (a probability).
    DReal,
    /// Mean D(G(z)) on generated images (a probability).
    DFake,
    /// A critic's E[D(x)] − E[D(G(z))]: WGAN-GP's estimate of the Wasserstein-1 distance (up to
    /// the critic's Lipschitz constant), the hinge discriminator's margin; no unit.
    WEstimate,
    /// WGAN-GP's gradient penalty E[(‖∇D(x̂)‖₂ − 1)²] on interpolates, unweighted.
    GradPenalty,
}

/// Where a component is plotted: on the loss axis or on the [0, 1] probability axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Axis {
    /// Nats per image.
    Nats,
    /// A probability in [0, 1].
    Probability,
    /// A critic's score or a penalty on it: unbounded, no unit.
    Score,
}

impl LossKey {
    pub const ALL: [LossKey; 9] = [
        LossKey::Loss,
        LossKey::Recon,
        LossKey::Kl,
        LossKey::DLoss,
        LossKey::GLoss,
        LossKey::DReal,
        LossKey::DFake,
        LossKey::WEstimate,
        LossKey::GradPenalty,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Its identifier: the CSV column, the JSON key and the name in logs.
    pub fn id(self) -> &'static str {
        match self {
            LossKey::Loss => "loss",
            LossKey::Recon => "recon",
            LossKey::Kl => "kl",
            LossKey::DLoss => "d_loss",
            LossKey::GLoss => "g_loss",
            LossKey::DReal => "d_real",
            LossKey::DFake => "d_fake",
            LossKey::WEstimate => "w_estimate",
            LossKey::GradPenalty => "grad_penalty",
        }
    }

    /// Its name for people.
    pub fn label(self) -> &'static str {
        match self {
            LossKey::Loss => "loss",
            LossKey::Recon => "reconstruction",
            LossKey::Kl => "KL",
            LossKey::DLoss => "D loss",
            LossKey::GLoss => "G loss",
            LossKey::DReal => "D(x)",
            LossKey::DFake => "D(G(z))",
            LossKey::WEstimate => "E D(x) − E D(G(z))",
            LossKey::GradPenalty => "gradient penalty",
        }
    }

    pub fn axis(self) -> Axis {
        match self {
            LossKey::Loss | LossKey::Recon | LossKey::Kl | LossKey::DLoss | LossKey::GLoss => Axis::Nats,
            LossKey::DReal | LossKey::DFake => Axis::Probability,
            LossKey::WEstimate | LossKey::GradPenalty => Axis::Score,
        }
    }

    /// The key whose [`id`](Self::id) is `id`.
    pub fn from_id(id: &str) -> Option<LossKey> {
        Self::ALL.into_iter().find(|k| k.id() == id)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LossKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Loss components of one step or one evaluation, per image: one optional value per [`LossKey`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Losses {
    values: [Option<f64>; LossKey::COUNT],
}

impl Losses {
    /// Losses with these components.
    pub fn of(pairs: &[(LossKey, f64)]) -> Self {
        let mut l = Losses::default();
        for &(k, v) in pairs {
            l.set(k, v);
        }
        l
    }

    pub fn get(&self, key: LossKey) -> Option<f64> {
        self.values[key.index()]
    }

    pub fn set(&mut self, key: LossKey, value: f64) {
        self.values[key.index()] = Some(value);
    }

    /// The components that are present, in [`LossKey::ALL`] order.
    pub fn components(&self) -> Vec<(LossKey, f64)> {
        LossKey::ALL.into_iter().filter_map(|k| self.get(k).map(|v| (k, v))).collect()
    }

    pub fn is_finite(&self) -> bool {
        self.values.iter().flatten().all(|v| v.is_finite())
    }

    /// Weighted running mean: adds `other` counted `n` times to `self` counted `total` times.
    pub fn accumulate(&mut self, other: &Losses, total: usize, n: usize) {
        let (a, b) = (total as f64, n as f64);
        for (x, y) in self.values.iter_mut().zip(other.values) {
            *x = match (*x, y) {
                (Some(x), Some(y)) => Some((x * a + y * b) / (a + b)),
                (None, y) => y,
                (x, None) => x,
            };
        }
    }
}

/// The serialised form is a map from [`LossKey::id`] to value (the components present).
impl Serialize for Losses {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let present = self.components();
        let mut m = s.serialize_map(Some(present.len()))?;
        for (k, v) in present {
            m.serialize_entry(k.id(), &v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Losses {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, Option<f64>>::deserialize(d)?;
        let mut l = Losses::default();
        for (id, v) in map {
            // Unknown ids (a newer version's components) are skipped, not refused.
            if let (Some(k), Some(v)) = (LossKey::from_id(&id), v) {
                l.set(k, v);
            }
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip() {
        for k in LossKey::ALL {
            assert_eq!(LossKey::from_id(k.id()), Some(k));
            assert_eq!(LossKey::ALL[k.index()], k, "ALL is in declaration order");
        }
    }

    #[test]
    fn accumulate_weights_by_count_and_keeps_missing_components() {
        let mut a = Losses::of(&[(LossKey::Loss, 1.0)]);
        let b = Losses::of(&[(LossKey::Loss, 4.0), (LossKey::Kl, 2.0)]);
        a.accumulate(&b, 1, 2);
        assert_eq!(a.get(LossKey::Loss), Some(3.0));
        assert_eq!(a.get(LossKey::Kl), Some(2.0));
        assert_eq!(a.get(LossKey::Recon), None);
    }

    #[test]
    fn serialises_as_a_map_of_present_components() {
        let l = Losses::of(&[(LossKey::DLoss, 0.5), (LossKey::DFake, 0.25)]);
        let s = serde_json::to_string(&l).unwrap();
        assert_eq!(s, r#"{"d_loss":0.5,"d_fake":0.25}"#);
        assert_eq!(serde_json::from_str::<Losses>(&s).unwrap(), l);
    }
}
