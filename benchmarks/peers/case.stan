// The single-case model of dialyzability, `build_model([case], population="fixed")`
// (src/dialyzability/model/build.py), written in Stan as the benchmark's peer.
//
// Same sampler coordinates and names as the PyMC model: volume_raw, clearance_raw (the pair
// (log CL_R, log CL_NR) in coordinates of log k: log CL = loc + L u + delta 1 with
// u ~ N(-delta L^-1 1, I), delta = sd_V volume_raw), ka_raw, bioavailability_raw (Beta),
// cl_ectr_raw, a0_raw, weight_raw, timing (uniform on its range); same closed-form kinetics
// (one compartment, first-order absorption, piecewise-constant elimination: pk/closed_form.py);
// same likelihood on log y (observations.py: per kind a multivariate Student-t, the error SD
// integrated out; a level below the LLOQ by the Student-t CDF). The log density equals PyMC's
// up to a constant (checked by benchmarks/peers/stan_case.py, which also prepares the data
// from `make_batch([case], drug)`). Indices are 1-based; 0 means "none".
functions {
  // (exp(-a t) - exp(-b t)) / (b - a), exact and smooth at a == b (closed_form.divided_exp)
  real divided_exp(real a, real b, real t) {
    real h = 0.5 * (b - a) * t;
    if (abs(h) < 1e-3) {
      real h2 = h * h;
      return t * exp(-0.5 * (a + b) * t) * (1 + h2 / 6 + h2 * h2 / 120);
    }
    return t * exp(-fmin(a, b) * t) * (-expm1(-2 * abs(h))) / (2 * abs(h));
  }

  // One case's kinetics (closed_form.solve_batch for one row): the concentrations at the
  // sample events, then the AUCs over the windows. Events are ranked at every evaluation
  // (their times may be latent; ties broken by event order), then one pass over the sorted
  // intervals; the integral of A over an interval by mass balance.
  vector solve_case(vector t, array[] int dose_event, vector dose_amount, array[] int dose_oral,
                    array[] int session_start, array[] int session_end, vector cl_session,
                    array[,] int windows, array[] int samples, int initial_event,
                    real volume, real cl, real ka, real f, real a0) {
    int n = num_elements(t);
    int n_samples = num_elements(samples);
    int n_windows = size(windows);
    array[n] int pos;
    vector[n] grid;
    vector[n] g_in = rep_vector(0, n);
    vector[n] a_in = rep_vector(0, n);
    vector[n] amount;
    vector[n - 1] integral;
    vector[n_samples + n_windows] out;
    for (i in 1:n) {
      pos[i] = 1;
      for (j in 1:n) {
        if (t[j] < t[i] || (t[j] == t[i] && j < i)) pos[i] += 1;
      }
      grid[pos[i]] = t[i];
    }
    for (d in 1:num_elements(dose_event)) {
      if (dose_oral[d]) g_in[pos[dose_event[d]]] += f * dose_amount[d];
      else a_in[pos[dose_event[d]]] += dose_amount[d];
    }
    if (initial_event > 0) a_in[pos[initial_event]] += a0;
    {
      real gut = g_in[1];
      amount[1] = a_in[1];
      for (p in 2:n) {
        real dt = grid[p] - grid[p - 1];
        real mid = 0.5 * (grid[p] + grid[p - 1]);
        real k = cl;
        real d;
        real gut_end;
        real amount_end;
        for (s in 1:num_elements(session_start)) {
          if (t[session_start[s]] <= mid && mid < t[session_end[s]]) k += cl_session[s];
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
    for (l in 1:n_samples) out[l] = amount[pos[samples[l]]] / volume;
    for (w in 1:n_windows) {
      real s = 0;
      for (p in pos[windows[w, 1]]:(pos[windows[w, 2]] - 1)) s += integral[p];
      out[n_samples + w] = s / volume;
    }
    return out;
  }

  // multivariate Student-t of n log-scale residuals with sum of squares r2 (observations.py)
  real marginal_t(real r2, int n, real nu, real s) {
    return lgamma((nu + n) / 2) - lgamma(nu / 2) - n / 2.0 * log(nu * pi() * s ^ 2)
           - (nu + n) / 2 * log1p(r2 / (nu * s ^ 2));
  }
}
data {
  // events: known times (latent timings at 0), latent timings and where they enter
  int<lower=2> N;
  vector[N] event_time;
  int<lower=0> T;
  vector[T] timing_lo;
  vector[T] timing_hi;
  int<lower=0> K;
  array[K] int<lower=1, upper=N> scatter_event;
  array[K] int<lower=1, upper=T> scatter_timing;
  // doses, sessions, windows, samples
  int<lower=0> D;
  array[D] int<lower=1, upper=N> dose_event;
  vector[D] dose_amount;
  array[D] int<lower=0, upper=1> dose_oral;
  int<lower=0> S;
  array[S] int<lower=1, upper=N> session_start;
  array[S] int<lower=1, upper=N> session_end;
  array[S] int<lower=1> session_modality;
  int<lower=1> W;
  array[W, 2] int<lower=1, upper=N> windows;
  int<lower=0> L;
  array[L] int<lower=1, upper=N> samples;
  int<lower=0, upper=N> initial_event;
  // observations (log y)
  int<lower=0> Q;
  array[Q] int<lower=1, upper=L> level_sample;
  vector[Q] level_log_y;
  int<lower=0> B;
  array[B] int<lower=1, upper=L> censored_sample;
  vector[B] censored_log_lloq;
  int<lower=0> U;
  array[U] int<lower=1, upper=W> urine_window;
  vector[U] urine_log_y;
  int<lower=0> E;
  array[E] int<lower=1, upper=W> effluent_window;
  array[E] int<lower=1> effluent_modality;
  vector[E] effluent_log_y;
  vector[3] nu;  // error priors of levels, urine, effluent (io.drugs.error_prior)
  vector[3] scale;
  // priors
  int<lower=0, upper=1> oral;
  int<lower=0, upper=1> weight_missing;
  int<lower=0, upper=1> no_dose;
  real log_weight_known;
  real weight_mu;
  real weight_sd;
  real volume_mu;
  real volume_sd;
  vector[2] cl_mean;
  matrix[2, 2] cl_chol;
  real ka_mu;
  real ka_sd;
  real f_alpha;
  real f_beta;
  int<lower=0> M;
  vector[M] ectr_mu;
  vector[M] ectr_sd;
  real log_a0_guess;
  real a0_sd;
}
transformed data {
  // L^-1 1 of the clearance prior's Cholesky factor
  vector[2] chol_inv_ones = [1 / cl_chol[1, 1], (1 - cl_chol[2, 1] / cl_chol[1, 1]) / cl_chol[2, 2]]';
}
parameters {
  array[weight_missing] real weight_raw;
  real volume_raw;
  vector[2] clearance_raw;
  real ka_raw;
  array[oral] real<lower=0, upper=1> bioavailability_raw;
  vector[M] cl_ectr_raw;
  array[no_dose] real a0_raw;
  vector<lower=timing_lo, upper=timing_hi>[T] timing;
}
transformed parameters {
  real weight;
  real volume;
  real cl_renal;
  real cl_nonrenal;
  real ka;
  vector[M] cl_ectr;
  {
    real log_weight = weight_missing ? weight_mu + weight_sd * weight_raw[1] : log_weight_known;
    real delta_v = volume_sd * volume_raw;
    vector[2] log_cl = cl_mean + 0.75 * (log_weight - log(70)) + cl_chol * clearance_raw + delta_v;
    weight = exp(log_weight);
    volume = exp(volume_mu + log_weight + delta_v);
    cl_renal = exp(log_cl[1]);
    cl_nonrenal = exp(log_cl[2]);
    ka = exp(ka_mu + ka_sd * ka_raw);
    cl_ectr = exp(ectr_mu + ectr_sd .* cl_ectr_raw);
  }
}
model {
  // priors (full densities, as PyMC's)
  if (weight_missing) target += normal_lpdf(weight_raw[1] | 0, 1);
  target += normal_lpdf(volume_raw | 0, 1);
  target += normal_lpdf(clearance_raw | -volume_sd * volume_raw * chol_inv_ones, 1);
  target += normal_lpdf(ka_raw | 0, 1);
  if (oral) target += beta_lpdf(bioavailability_raw[1] | f_alpha, f_beta);
  target += normal_lpdf(cl_ectr_raw | 0, 1);
  if (no_dose) target += normal_lpdf(a0_raw[1] | 0, 1);
  target += uniform_lpdf(timing | timing_lo, timing_hi);

  {
    vector[N] t = event_time;
    vector[S] cl_session;
    vector[L + W] out;
    vector[W] auc;
    for (k in 1:K) t[scatter_event[k]] += timing[scatter_timing[k]];
    for (s in 1:S) cl_session[s] = cl_ectr[session_modality[s]];
    out = solve_case(t, dose_event, dose_amount, dose_oral, session_start, session_end,
                     cl_session, windows, samples, initial_event, volume,
                     cl_renal + cl_nonrenal, ka, oral ? bioavailability_raw[1] : 1,
                     no_dose ? exp(log_a0_guess + a0_sd * a0_raw[1]) : 0);
    auc = segment(out, L + 1, W);
    if (Q > 0) {
      vector[Q] mu = log(fmax(out[level_sample], 1e-300));
      target += marginal_t(dot_self(level_log_y - mu), Q, nu[1], scale[1]);
    }
    for (b in 1:B) {
      target += student_t_lcdf(censored_log_lloq[b] | nu[1],
                               log(fmax(out[censored_sample[b]], 1e-300)), scale[1]);
    }
    if (U > 0) {
      vector[U] mu = log(fmax(cl_renal * auc[urine_window], 1e-300));
      target += marginal_t(dot_self(urine_log_y - mu), U, nu[2], scale[2]);
    }
    if (E > 0) {
      vector[E] mu = log(fmax(cl_ectr[effluent_modality] .* auc[effluent_window], 1e-300));
      target += marginal_t(dot_self(effluent_log_y - mu), E, nu[3], scale[3]);
    }
  }
}
generated quantities {
  real ratio = M > 0 ? cl_ectr[1] / cl_renal : not_a_number();  // CL_ECTR/CL_R, first modality
}
