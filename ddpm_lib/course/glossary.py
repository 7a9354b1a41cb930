"""The course's glossary: every term the chapters use and explain, with a one-line meaning and the chapter
that teaches it (chapter 00 shows it as a table).

    from ddpm_lib.course import glossary
    glossary.markdown()            # the table, chapter numbers looked up in book.toml by chapter id

Each :class:`Term` names its chapter by id, not by number, so that the table stays right when chapters
are renumbered; ``pattern`` is a regular expression (case-insensitive) that the chapter's text contains
where it explains the term: tests/test_book.py checks that every term is still taught where the glossary
says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Term", "TERMS", "markdown", "missing"]


@dataclass(frozen=True)
class Term:
    """One glossary entry: the term, its meaning in one line, the id of the chapter that teaches it (more
    than one, space-separated, when a later chapter takes it further) and a regex its text contains."""

    term: str
    meaning: str
    chapters: str
    pattern: str


# fmt: off
TERMS = [
    Term("VAE (variational autoencoder)",
         "a latent-variable model p(x|z) p(z) trained with an encoder q(z|x) by maximizing the ELBO",
         "vae-to-diffusion", r"VAE"),
    Term("ELBO (evidence lower bound)",
         "E_q[log p(x, z) - log q(z|x)] <= log p(x); it falls short of log p(x) by KL(q(z|x) || p(z|x))",
         "vae-to-diffusion", r"ELBO"),
    Term("KL divergence",
         "KL(q || p) = E_q[log q - log p] >= 0, zero only when q = p, and not symmetric in q and p",
         "vae-to-diffusion", r"KL"),
    Term("reparameterization",
         "a sample written as a function of the parameters and fixed noise (z = m + s eps), so gradients "
         "pass through it; DDPM's x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps",
         "vae-to-diffusion forward-closed-form", r"reparameteri"),
    Term("forward (diffusion) process q",
         "the fixed Markov chain that adds Gaussian noise step by step: q(x_t|x_{t-1}) = "
         "N(sqrt(1 - beta_t) x_{t-1}, beta_t I)",
         "vae-to-diffusion", r"forward process"),
    Term("reverse (generative) process p",
         "the learned chain from noise back to data, p(x_{t-1}|x_t), Gaussian when the steps are small",
         "elbo", r"reverse"),
    Term("Markov chain",
         "a sequence x^0, x^1, ... in which each step depends on the one before it only",
         "elbo", r"Markov"),
    Term("trajectory",
         "one whole run of a chain, x^{0:T} = (x^0, ..., x^T); the model's likelihood is an integral over them",
         "elbo", r"trajector"),
    Term("importance sampling",
         "E_p[f] estimated by drawing from another distribution q and weighting each draw by p/q",
         "vae-to-diffusion elbo", r"importance sampl"),
    Term("Monte Carlo estimate",
         "an average over random draws that estimates an expectation; its error shrinks as 1/sqrt(n)",
         "start-here", r"Monte Carlo"),
    Term("standard error",
         "the standard deviation of an estimate: sigma / sqrt(n) for a mean of n independent draws",
         "start-here", r"standard error"),
    Term("delta method",
         "the standard error of g(estimate) is about |g'| times the estimate's: SE[log m] ~ SE[m] / m",
         "vae-to-diffusion", r"delta method"),
    Term("sliced Wasserstein distance",
         "the average over random directions of the 1-D earth mover's distance between two point clouds' "
         "projections: how far samples lie from the data",
         "vae-to-diffusion eps-and-l-simple", r"sliced Wasserstein"),
    Term("Jensen's inequality",
         "for a concave function such as log, log E[w] >= E[log w]: it turns a log-likelihood into a bound",
         "vae-to-diffusion elbo", r"Jensen"),
    Term("Jensen gap",
         "log E[w] - E[log w] >= 0, the slack of the bound; about Var[log w] / 2 when log w varies little",
         "elbo", r"Jensen gap"),
    Term("the bound K (Sohl-Dickstein et al.)",
         "a lower bound K <= L = E[log p(x^0)] on the model's log-likelihood, from Jensen's inequality",
         "elbo", r"bound \$?K"),
    Term("the bound L (DDPM)",
         "an upper bound L >= E[-log p(x_0)] on the negative log-likelihood; L plays the role of -K",
         "elbo posterior-and-kl", r"\bL\b|L_T"),
    Term("L_T, L_{t-1}, L_0",
         "the terms of L (DDPM Eq. 5): KL(q(x_T|x_0) || N(0, I)), the KL of each reverse step against the "
         "posterior, and the decoder's -log p(x_0|x_1)",
         "posterior-and-kl", r"L_0"),
    Term("detailed balance (reversibility)",
         "pi(x) T(y|x) = pi(y) T(x|y): at equilibrium the chain run backwards looks like the chain run forwards",
         "elbo", r"detailed balance|reversib"),
    Term("edge effect",
         "the last reverse step p(x^0|x^1) behaves unlike the others (no step before x^0), so Sohl-Dickstein "
         "et al. fix it to the reversal of the first forward step",
         "elbo", r"edge effect"),
    Term("quasi-static process",
         "a physics term: a change made so slowly that the system stays in equilibrium at every step; here, "
         "many small beta_t, which make the bound tight",
         "elbo", r"quasi-static"),
    Term("Gauss-Hermite quadrature",
         "an exact-for-polynomials rule: an integral against a Gaussian as a weighted sum of f at fixed nodes",
         "measuring-the-bound", r"Gauss-Hermite"),
    Term("Rao-Blackwellization",
         "replacing a random draw by its exact conditional expectation (a closed-form KL instead of sampling "
         "x_{t-1}): same mean, never more variance",
         "posterior-and-kl", r"Rao-Blackwell"),
    Term("noise schedule",
         "the rates beta_1..beta_T: linear from 1e-4 to 0.02 in DDPM, or cosine (Nichol & Dhariwal 2021)",
         "forward-closed-form", r"schedule"),
    Term("alpha_t, alpha-bar_t",
         "alpha_t = 1 - beta_t, one step's factor; abar_t = alpha_1 ... alpha_t, so that "
         "q(x_t|x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)",
         "start-here forward-closed-form", r"bar\\alpha"),
    Term("SNR (signal-to-noise ratio)",
         "SNR(t) = abar_t / (1 - abar_t), the signal's variance over the noise's in x_t",
         "start-here forward-closed-form", r"SNR"),
    Term("kurtosis",
         "E[z^4] of a standardized variable z, 3 for a Gaussian: a check of the shape beyond mean and variance",
         "forward-closed-form", r"kurtosis"),
    Term("Bonferroni bound",
         "P(any of n events) <= the sum of their probabilities: n tests at level a/n flag by chance at most a",
         "forward-closed-form", r"Bonferroni"),
    Term("posterior q(x_{t-1}|x_t, x_0)",
         "the forward process run backwards given x_0: the Gaussian N(mu~_t, beta~_t I) of DDPM Eqs. 6-7",
         "posterior-and-kl", r"posterior"),
    Term("mu~_t, beta~_t",
         "the posterior's mean (a weighted sum of x_0 and x_t) and variance (1 - abar_{t-1}) / (1 - abar_t) "
         "beta_t; beta~_1 = 0",
         "posterior-and-kl", r"tilde\\beta"),
    Term("eps-prediction, eps_theta",
         "the network predicts the noise eps in x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and the "
         "reverse mean mu_theta is formed from it (DDPM Eq. 11)",
         "eps-and-l-simple", r"epsilon_\\theta|eps_theta"),
    Term("sigma_t^2 = beta_t or beta~_t",
         "DDPM's two fixed variances of the reverse step (`fixed_large`, `fixed_small`), the extremes for "
         "noise data and for a single data point",
         "eps-and-l-simple", r"fixed_large|fixed_small"),
    Term("L_simple",
         "||eps - eps_theta(x_t, t)||^2 with t uniform: the bound's terms with their weights dropped (Eq. 14)",
         "eps-and-l-simple", r"L_\{?\\?(mathrm\{)?simple|L_simple"),
    Term("score",
         "grad_x log q(x_t), the direction in which the density grows; eps = -sqrt(1 - abar_t) times it",
         "eps-and-l-simple", r"score"),
    Term("Langevin dynamics",
         "sampling by small steps along the score plus Gaussian noise; Algorithm 2 resembles it",
         "eps-and-l-simple", r"Langevin"),
    Term("discretized decoder",
         "p(x_0|x_1) as a Gaussian's mass on each of the 256 bins of an 8-bit value, the edge bins open "
         "(DDPM Eq. 13)",
         "decoder-and-bits", r"discretized"),
    Term("nats and bits",
         "log-likelihoods with the natural log (nats) or log base 2 (bits): bits = nats / ln 2",
         "decoder-and-bits", r"\bnats\b"),
    Term("bits/dim",
         "the negative log-likelihood (or its bound) in bits, divided by the number of dimensions (pixels)",
         "decoder-and-bits", r"bits/dim|bits per dim"),
    Term("stratified estimate",
         "a sum over t estimated from one draw in each block of timesteps, not from t drawn uniformly: the "
         "same mean, less variance",
         "decoder-and-bits", r"stratif"),
    Term("U-Net",
         "a convolutional network that downsamples, then upsamples, with skip connections between equal "
         "resolutions; DDPM's eps_theta for images",
         "unet", r"U-Net"),
    Term("GroupNorm",
         "normalization of each example's features over groups of channels (it does not depend on the batch)",
         "unet", r"GroupNorm"),
    Term("self-attention",
         "each position's features updated by an average of all positions', weighted by feature similarity",
         "unet", r"attention"),
    Term("sinusoidal time embedding",
         "t encoded as sines and cosines of t at geometrically spaced frequencies, the network's input for t",
         "unet", r"sinusoidal"),
    Term("EMA (exponential moving average)",
         "weights averaged over training, theta_ema <- d theta_ema + (1 - d) theta; they sample better",
         "training", r"EMA"),
    Term("ancestral sampling",
         "Algorithm 2: draw x_T ~ N(0, I), then x_{t-1} ~ p(x_{t-1}|x_t) for t = T, ..., 1",
         "sampling", r"ancestral"),
    Term("respacing",
         "sampling on a subsequence tau_1 < ... < tau_K of the timesteps, the betas recomputed so that abar "
         "at the kept steps is unchanged",
         "sampling", r"respac"),
    Term("DDIM",
         "Song et al. 2021's sampler: the same q(x_t|x_0) with a non-Markovian forward process; "
         "deterministic at eta = 0 and good in few steps",
         "sampling", r"DDIM"),
    Term("FCD (Frechet classifier distance)",
         "the Frechet distance between Gaussians fitted to a classifier's features of generated and of real "
         "images (FID's recipe with the course's Fashion-MNIST classifier)",
         "sampling", r"FCD"),
    Term("conditioning by multiplying r(x)",
         "p~(x^t) proportional to p(x^t) r(x^t) at every step: the reverse kernel's mean moves by its variance "
         "times grad log r (Sohl-Dickstein et al. Sec. 2.5)",
         "multiplying-distributions", r"r\(x"),
    Term("inpainting",
         "restoring a masked region: the known pixels are held at their noised values at every step",
         "multiplying-distributions", r"inpaint"),
    Term("entropy bounds of the reverse process",
         "bounds on H(X_{t-1}|X_t) from the forward process alone (Sohl-Dickstein et al. Eq. 24)",
         "multiplying-distributions", r"entropy"),
    Term("interpolation in x_t space",
         "noise two images to x_t, mix them, and denoise the mixture back to an image",
         "reconstruction-and-interpolation", r"interpolat"),
]
# fmt: on


def _book(book=None):
    from .book import Book, load_book

    return book if isinstance(book, Book) else load_book(book)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a bar would end the cell, a tilde may strike text through."""
    return re.sub(r"([|~*\\])", r"\\\1", text)


def markdown(book=None) -> str:
    """The glossary as a Markdown table, in alphabetical order, with the number of the chapter (or
    chapters) that teach each term, looked up in ``book`` (a :class:`~ddpm_lib.course.book.Book`, or the
    path of a book.toml; default: the repository's)."""
    b = _book(book)
    rows = ["| term | meaning | chapter |", "|---|---|---|"]
    for t in sorted(TERMS, key=lambda t: t.term.lower().lstrip("(")):
        numbers = ", ".join(f"{b.chapter(c).number:02d}" for c in t.chapters.split())
        rows.append(f"| {_cell(t.term)} | {_cell(t.meaning)} | {numbers} |")
    return "\n".join(rows)


def missing(book=None) -> list:
    """The glossary entries whose chapter does not (any longer) contain their ``pattern``, as
    ``"<term>: chapter NN"`` strings (empty: every term is taught where the glossary says)."""
    b = _book(book)
    out = []
    for t in TERMS:
        for cid in t.chapters.split():
            c = b.chapter(cid)
            text = c.py_path.read_text(encoding="utf-8") if c.py_exists else ""
            if not re.search(t.pattern, text, flags=re.IGNORECASE):
                out.append(f"{t.term}: chapter {c.number:02d} ({c.id})")
    return out
