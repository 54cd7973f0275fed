// The single-case model of dialyzability (src/dialyzability/model.py) written in Stan, as the
// benchmark's peer. Same priors, same parametrisation (non-centred log-normals, bivariate
// log-normal renal/non-renal clearance, uniform latent timings, Beta bioavailability), same
// closed-form kinetics (one compartment, first-order absorption, piecewise-constant
// elimination), same likelihood (log-normal errors with the error SD integrated out: a
// multivariate Student-t per kind of observation; censored levels by the Student-t CDF).
// The kinetics are written as a Stan user would: events ranked, then one pass over the
// sorted intervals. Data are prepared by benchmarks/peers/stan_case.py.
functions {
  // (exp(-a t) - exp(-b t)) / (b - a), exact and smooth at a == b (kinetics.divided_exp)
  real divided_exp(real a, real b, real t) {
    real h = 0.5 * (b - a) * t;
    if (abs(h) < 1e-3) {
      real h2 = h * h;
      return t * exp(-0.5 * (a + b) * t) * (1 + h2 / 6 + h2 * h2 / 120);
    }
    return t * exp(-fmin(a, b) * t) * (-expm1(-2 * abs(h))) / (2 * abs(h));
  }
  real log_marginal_t(vector log_y, vector mu, real nu, real s) {
    int n = num_elements(log_y);
    return lgamma((nu + n) / 2) - lgamma(nu / 2) - n / 2.0 * log(nu * pi() * s ^ 2)
           - (nu + n) / 2 * log1p(dot_self(log_y - mu) / (nu * s ^ 2)) - sum(log_y);
  }
}
data {
  int<lower=1> N;                       // events
  vector[N] event_const;                // known time, or known duration of an end event (h)
  array[N] int<lower=0> latent_of;      // index of the event's latent timing, 0 if known
  array[N] int<lower=0> duration_of;    // for an end given by a duration: its start event
  int<lower=0> L;
  vector[L] latent_lo;
  vector[L] latent_hi;
  int<lower=0> D;
  array[D] int<lower=1> dose_event;
  vector[D] dose_amount;
  array[D] int<lower=0, upper=1> dose_oral;
  int<lower=0, upper=1> any_oral;
  int<lower=0> S;
  array[S] int<lower=1> session_start;
  array[S] int<lower=1> session_end;
  array[S] int<lower=1> session_modality;
  int<lower=0> M;
  vector[M] ectr_mu;
  vector[M] ectr_sd;
  int<lower=0> W;
  array[W, 2] int<lower=1> windows;
  int<lower=0> U;
  array[U] int<lower=1> urine_window;
  vector[U] urine_log_y;
  int<lower=0> E;
  array[E] int<lower=1> effluent_session;
  array[E] int<lower=1> effluent_window;
  vector[E] effluent_log_y;
  int<lower=0> Q;
  array[Q] int<lower=1> level_event;
  vector[Q] level_log_y;
  int<lower=0> C;
  array[C] int<lower=1> censored_event;
  vector[C] censored_log_lloq;
  int<lower=0, upper=1> has_weight;
  real log_weight_known;
  real weight_mu;
  real weight_sd;
  vector[2] cl_mean;
  matrix[2, 2] cl_chol;
  real volume_mu;
  real volume_sd;
  real ka_mu;
  real ka_sd;
  real f_alpha;
  real f_beta;
  int<lower=0> initial_event;           // event where a0 enters (cases without a dose), 0 if none
  real log_a0_guess;
  vector[3] nu;                         // level, urine, effluent
  vector[3] scale;
}
parameters {
  real volume_z;
  vector[2] clearance_z;
  real ka_z;
  array[any_oral] real<lower=0, upper=1> bioavailability;
  vector[M] cl_ectr_z;
  vector<lower=latent_lo, upper=latent_hi>[L] t_latent;
  array[1 - has_weight] real weight_z;
  array[initial_event > 0 ? 1 : 0] real a0_z;
}
model {
  real log_weight = has_weight ? log_weight_known : weight_mu + weight_sd * weight_z[1];
  real volume = exp(volume_mu + volume_sd * volume_z + log_weight);
  vector[2] log_cl = cl_mean + 0.75 * (log_weight - log(70)) + cl_chol * clearance_z;
  real cl_renal = exp(log_cl[1]);
  real cl = cl_renal + exp(log_cl[2]);
  real ka = exp(ka_mu + ka_sd * ka_z);
  real f = any_oral ? bioavailability[1] : 1;
  vector[M] cl_ectr = exp(ectr_mu + ectr_sd .* cl_ectr_z);
  vector[N] t;
  array[N] int pos;
  vector[N] grid;
  vector[N] g_in = rep_vector(0, N);
  vector[N] a_in = rep_vector(0, N);
  vector[N] amount;
  vector[N - 1] integral;

  // event times, then their ranks (ties broken by event order) and the sorted grid
  for (i in 1:N) {
    real v = latent_of[i] > 0 ? t_latent[latent_of[i]] : event_const[i];
    t[i] = duration_of[i] > 0 ? t[duration_of[i]] + v : v;
  }
  for (i in 1:N) {
    pos[i] = 1;
    for (j in 1:N) {
      if (t[j] < t[i] || (t[j] == t[i] && j < i)) pos[i] += 1;
    }
    grid[pos[i]] = t[i];
  }
  for (d in 1:D) {
    if (dose_oral[d]) g_in[pos[dose_event[d]]] += f * dose_amount[d];
    else a_in[pos[dose_event[d]]] += dose_amount[d];
  }
  if (initial_event > 0) a_in[pos[initial_event]] += exp(log_a0_guess + 1.5 * a0_z[1]);

  // one pass over the sorted intervals
  {
    real gut = g_in[1];
    amount[1] = a_in[1];
    for (p in 2:N) {
      real dt = grid[p] - grid[p - 1];
      real mid = 0.5 * (grid[p] + grid[p - 1]);
      real k = cl;
      real d;
      real gut_end;
      real amount_end;
      for (s in 1:S) {
        if (t[session_start[s]] <= mid && mid < t[session_end[s]]) {
          k += cl_ectr[session_modality[s]];
        }
      }
      k /= volume;
      d = divided_exp(k, ka, dt);
      gut_end = gut * exp(-ka * dt);
      amount_end = amount[p - 1] * exp(-k * dt) + ka * gut * d;
      integral[p - 1] = (gut - gut_end + amount[p - 1] - amount_end) / k;
      gut = gut_end + g_in[p];
      amount[p] = amount_end + a_in[p];
    }
  }

  // priors (full densities, so that log densities match PyMC's)
  target += normal_lpdf(volume_z | 0, 1);
  target += normal_lpdf(clearance_z | 0, 1);
  target += normal_lpdf(ka_z | 0, 1);
  if (any_oral) target += beta_lpdf(bioavailability[1] | f_alpha, f_beta);
  target += normal_lpdf(cl_ectr_z | 0, 1);
  target += uniform_lpdf(t_latent | latent_lo, latent_hi);
  if (!has_weight) target += normal_lpdf(weight_z[1] | 0, 1);
  if (initial_event > 0) target += normal_lpdf(a0_z[1] | 0, 1);

  // observations
  if (Q > 0) {
    vector[Q] log_conc;
    for (q in 1:Q) log_conc[q] = log(fmax(amount[pos[level_event[q]]] / volume, 1e-12));
    target += log_marginal_t(level_log_y, log_conc, nu[1], scale[1]);
  }
  for (c in 1:C) {
    real log_conc = log(fmax(amount[pos[censored_event[c]]] / volume, 1e-12));
    target += student_t_lcdf(censored_log_lloq[c] | nu[1], log_conc, scale[1]);
  }
  {
    vector[W] auc;
    for (w in 1:W) {
      auc[w] = 0;
      for (p in pos[windows[w, 1]]:(pos[windows[w, 2]] - 1)) auc[w] += integral[p];
      auc[w] /= volume;
    }
    if (U > 0) {
      target += log_marginal_t(urine_log_y, log(cl_renal * auc[urine_window]), nu[2], scale[2]);
    }
    if (E > 0) {
      vector[E] pred;
      for (e in 1:E) pred[e] = cl_ectr[session_modality[effluent_session[e]]] * auc[effluent_window[e]];
      target += log_marginal_t(effluent_log_y, log(pred), nu[3], scale[3]);
    }
  }
}
generated quantities {
  // the ratio of the first modality's extracorporeal clearance to renal clearance
  real ratio;
  {
    real log_weight = has_weight ? log_weight_known : weight_mu + weight_sd * weight_z[1];
    vector[2] log_cl = cl_mean + 0.75 * (log_weight - log(70)) + cl_chol * clearance_z;
    ratio = M > 0 ? exp(ectr_mu[1] + ectr_sd[1] * cl_ectr_z[1]) / exp(log_cl[1]) : not_a_number();
  }
}
