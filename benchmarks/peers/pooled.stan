// The pooled (hierarchical) model of dialyzability, `build_model(cases,
// population="hierarchical")` (src/dialyzability/model/build.py), written in Stan as the
// benchmark's peer, for a batch of C cases of one drug laid out as in design.Batch (padded
// arrays, with each case's own counts).
//
// Same sampler coordinates and names as the PyMC model. Population layer: mu_volume ~ the
// drug's prior of log V/kg; the population means of (log CL_R per kidney class, log CL_NR)
// under the drug's bivariate prior for every class, CL_NR shared, sampled centred:
// mu_cl_nonrenal ~ N(m_NR, s_NR) and given it mu_cl_renal[k] ~ N(m_R[k] + c (mu_cl_nonrenal -
// m_NR) / s_NR^2, s_R[k]) (the conditional normal, c the covariance); mu_ka; mu_cl_ectr per
// modality; half-normal between-case SDs tau_* (scales TAU_SCALE).
// Per case, each of log V, the clearance pair and log CL_ECTR is sampled centred or not, as
// data flags say (stan_pooled.centring gives build.py's choice, none centred):
// volume_raw = log V ~ N(mu_volume + log weight, tau_volume) centred, else ~ N(0, 1) with
// log V = mu_volume + log weight + tau_volume volume_raw; clearance_raw[c, j] = log CL_j - log V
// (log k) ~ N(loc_j - log V, tau_j) centred, else ~ N(0, 1) with log CL_j = loc_j + tau_j
// clearance_raw[c, j], where loc = (mu_cl_renal[kidney], mu_cl_nonrenal) + 0.75 log(weight/70);
// cl_ectr_raw = log CL_ECTR ~ N(mu_cl_ectr, tau_cl_ectr) centred, else ~ N(0, 1). ka_raw
// non-centred; bioavailability_raw (oral cases), weight_raw (weight not reported), a0_raw (no
// dose) and the latent timings as in case.stan. Kinetics and likelihood as in case.stan (the
// functions block is the same; stan_pooled.py checks it). The log density equals PyMC's up
// to a constant (checked by benchmarks/peers/stan_pooled.py, which also prepares the data).
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
  int<lower=1> C;  // cases
  int<lower=0> M;  // modalities
  // events (padded to N; case c has n_events[c]): known times, latent timings and where
  // they enter (case, event, timing)
  int<lower=2> N;
  array[C] int<lower=2, upper=N> n_events;
  matrix[C, N] event_time;
  int<lower=0> T;
  vector[T] timing_lo;
  vector[T] timing_hi;
  int<lower=0> K;
  array[K] int<lower=1, upper=C> scatter_case;
  array[K] int<lower=1, upper=N> scatter_event;
  array[K] int<lower=1, upper=T> scatter_timing;
  // doses, sessions, windows, samples (padded; each case's count)
  int<lower=1> D;
  array[C] int<lower=0, upper=D> n_doses;
  array[C, D] int<lower=1, upper=N> dose_event;
  matrix[C, D] dose_amount;
  array[C, D] int<lower=0, upper=1> dose_oral;
  int<lower=1> S;
  array[C] int<lower=0, upper=S> n_sessions;
  array[C, S] int<lower=1, upper=N> session_start;
  array[C, S] int<lower=1, upper=N> session_end;
  array[C, S] int<lower=1> session_modality;
  int<lower=1> W;
  array[C] int<lower=1, upper=W> n_windows;
  array[C, W, 2] int<lower=1, upper=N> windows;
  int<lower=1> P;
  array[C] int<lower=0, upper=P> n_samples;
  array[C, P] int<lower=1, upper=N> samples;
  array[C] int<lower=0, upper=N> initial_event;
  // observations (log y), each with its case
  int<lower=0> Q;
  array[Q] int<lower=1, upper=C> level_case;
  array[Q] int<lower=1, upper=P> level_sample;
  vector[Q] level_log_y;
  int<lower=0> B;
  array[B] int<lower=1, upper=C> censored_case;
  array[B] int<lower=1, upper=P> censored_sample;
  vector[B] censored_log_lloq;
  int<lower=0> U;
  array[U] int<lower=1, upper=C> urine_case;
  array[U] int<lower=1, upper=W> urine_window;
  vector[U] urine_log_y;
  int<lower=0> E;
  array[E] int<lower=1, upper=C> effluent_case;
  array[E] int<lower=1, upper=W> effluent_window;
  array[E] int<lower=1> effluent_modality;
  vector[E] effluent_log_y;
  vector[3] nu;  // error priors of levels, urine, effluent (io.drugs.error_prior)
  vector[3] scale;
  // which coordinates are sampled centred: log V, (log k_R, log k_NR), log CL_ECTR
  array[C] int<lower=0, upper=1> volume_centred;
  array[C, 2] int<lower=0, upper=1> clearance_centred;
  array[C, M] int<lower=0, upper=1> ectr_centred;
  // which cases have a bioavailability, a latent weight, a latent body burden
  int<lower=0, upper=C> n_oral;
  array[n_oral] int<lower=1, upper=C> oral_case;
  int<lower=0, upper=C> n_weight_missing;
  array[n_weight_missing] int<lower=1, upper=C> weight_missing_case;
  int<lower=0, upper=C> n_no_dose;
  array[n_no_dose] int<lower=1, upper=C> no_dose_case;
  vector[C] log_weight_known;  // 0 where not reported
  real weight_mu;
  real weight_sd;
  vector[C] log_a0_guess;
  real a0_sd;
  // population priors
  int<lower=1> G;  // kidney classes present
  array[C] int<lower=1, upper=G> kidney;
  real m_nonrenal;
  real s_nonrenal;
  real cov_cl;
  vector[G] m_renal;
  vector[G] s_renal;  // conditional SD given mu_cl_nonrenal
  real volume_mu;
  real volume_sd;
  real ka_mu;
  real ka_sd;
  real f_alpha;
  real f_beta;
  vector[M] ectr_mu;
  vector[M] ectr_sd;
  real tau_volume_scale;
  real tau_cl_renal_scale;
  real tau_cl_nonrenal_scale;
  real tau_cl_ectr_scale;
  real tau_ka_scale;
}
transformed data {
  // for each case, its index among the cases with a latent weight (0: weight reported)
  array[C] int weight_missing = rep_array(0, C);
  // observations per case and kind (the multivariate Student-t of each case and kind)
  array[C] int n_level = rep_array(0, C);
  array[C] int n_urine = rep_array(0, C);
  array[C] int n_effluent = rep_array(0, C);
  for (q in 1:Q) n_level[level_case[q]] += 1;
  for (u in 1:U) n_urine[urine_case[u]] += 1;
  for (e in 1:E) n_effluent[effluent_case[e]] += 1;
  for (i in 1:n_weight_missing) weight_missing[weight_missing_case[i]] = i;
}
parameters {
  real mu_volume;
  real mu_cl_nonrenal;
  vector[G] mu_cl_renal;
  real<lower=0> tau_cl_renal;
  real<lower=0> tau_cl_nonrenal;
  real mu_ka;
  vector[M] mu_cl_ectr;
  array[M > 0 ? 1 : 0] real<lower=0> tau_cl_ectr;
  real<lower=0> tau_volume;
  real<lower=0> tau_ka;
  vector[n_weight_missing] weight_raw;
  vector[C] volume_raw;
  array[C] vector[2] clearance_raw;
  vector[C] ka_raw;
  vector<lower=0, upper=1>[n_oral] bioavailability_raw;
  array[C] vector[M] cl_ectr_raw;
  vector[n_no_dose] a0_raw;
  vector<lower=timing_lo, upper=timing_hi>[T] timing;
}
transformed parameters {
  vector[C] weight;
  vector[C] volume;
  vector[C] cl_renal;
  vector[C] cl_nonrenal;
  vector[C] ka;
  array[C] vector[M] cl_ectr;
  {
    vector[C] log_weight = log_weight_known;
    vector[2] tau_cl = [tau_cl_renal, tau_cl_nonrenal]';
    log_weight[weight_missing_case] = weight_mu + weight_sd * weight_raw;
    weight = exp(log_weight);
    for (c in 1:C) {
      real log_v;
      vector[2] loc_cl = [mu_cl_renal[kidney[c]], mu_cl_nonrenal]' + 0.75 * (log_weight[c] - log(70));
      vector[2] log_cl;
      log_v = volume_centred[c] ? volume_raw[c]
                                : mu_volume + log_weight[c] + tau_volume * volume_raw[c];
      for (j in 1:2) {
        log_cl[j] = clearance_centred[c, j] ? clearance_raw[c, j] + log_v
                                            : loc_cl[j] + tau_cl[j] * clearance_raw[c, j];
      }
      volume[c] = exp(log_v);
      cl_renal[c] = exp(log_cl[1]);
      cl_nonrenal[c] = exp(log_cl[2]);
      for (m in 1:M) {
        cl_ectr[c, m] = exp(ectr_centred[c, m] ? cl_ectr_raw[c, m]
                                                : mu_cl_ectr[m] + tau_cl_ectr[1] * cl_ectr_raw[c, m]);
      }
    }
    ka = exp(mu_ka + tau_ka * ka_raw);
  }
}
model {
  // population layer (full densities, as PyMC's)
  target += normal_lpdf(mu_volume | volume_mu, volume_sd);
  target += normal_lpdf(mu_cl_nonrenal | m_nonrenal, s_nonrenal);
  target += normal_lpdf(mu_cl_renal | m_renal + cov_cl / s_nonrenal ^ 2 * (mu_cl_nonrenal - m_nonrenal),
                        s_renal);
  target += normal_lpdf(tau_cl_renal | 0, tau_cl_renal_scale) + log2();
  target += normal_lpdf(tau_cl_nonrenal | 0, tau_cl_nonrenal_scale) + log2();
  target += normal_lpdf(mu_ka | ka_mu, ka_sd);
  if (M > 0) {
    target += normal_lpdf(mu_cl_ectr | ectr_mu, ectr_sd);
    target += normal_lpdf(tau_cl_ectr[1] | 0, tau_cl_ectr_scale) + log2();
  }
  target += normal_lpdf(tau_volume | 0, tau_volume_scale) + log2();
  target += normal_lpdf(tau_ka | 0, tau_ka_scale) + log2();
  // cases
  target += normal_lpdf(weight_raw | 0, 1);
  {
    vector[2] tau_cl = [tau_cl_renal, tau_cl_nonrenal]';
    for (c in 1:C) {
      real log_weight = weight_missing[c] ? weight_mu + weight_sd * weight_raw[weight_missing[c]]
                                          : log_weight_known[c];
      real log_v = volume_centred[c] ? volume_raw[c]
                                     : mu_volume + log_weight + tau_volume * volume_raw[c];
      vector[2] loc_cl = [mu_cl_renal[kidney[c]], mu_cl_nonrenal]' + 0.75 * (log_weight - log(70));
      if (volume_centred[c]) target += normal_lpdf(volume_raw[c] | mu_volume + log_weight, tau_volume);
      else target += normal_lpdf(volume_raw[c] | 0, 1);
      for (j in 1:2) {
        if (clearance_centred[c, j]) {
          target += normal_lpdf(clearance_raw[c, j] | loc_cl[j] - log_v, tau_cl[j]);
        } else {
          target += normal_lpdf(clearance_raw[c, j] | 0, 1);
        }
      }
    }
  }
  for (c in 1:C) {
    for (m in 1:M) {
      if (ectr_centred[c, m]) target += normal_lpdf(cl_ectr_raw[c, m] | mu_cl_ectr[m], tau_cl_ectr[1]);
      else target += normal_lpdf(cl_ectr_raw[c, m] | 0, 1);
    }
  }
  target += normal_lpdf(ka_raw | 0, 1);
  target += beta_lpdf(bioavailability_raw | f_alpha, f_beta);
  target += normal_lpdf(a0_raw | 0, 1);
  target += uniform_lpdf(timing | timing_lo, timing_hi);

  {
    matrix[C, N] times = event_time;
    matrix[C, P] conc;
    matrix[C, W] auc;
    vector[C] f = rep_vector(1, C);
    vector[C] a0 = rep_vector(0, C);
    f[oral_case] = bioavailability_raw;
    a0[no_dose_case] = exp(log_a0_guess[no_dose_case] + a0_sd * a0_raw);
    for (k in 1:K) times[scatter_case[k], scatter_event[k]] += timing[scatter_timing[k]];
    for (c in 1:C) {
      int n = n_events[c];
      int nd = n_doses[c];
      int ns = n_sessions[c];
      int nw = n_windows[c];
      int np = n_samples[c];
      vector[ns] cl_session;
      vector[np + nw] out;
      for (s in 1:ns) cl_session[s] = cl_ectr[c, session_modality[c, s]];
      out = solve_case(times[c, 1:n]', dose_event[c, 1:nd], dose_amount[c, 1:nd]',
                       dose_oral[c, 1:nd], session_start[c, 1:ns], session_end[c, 1:ns],
                       cl_session, windows[c, 1:nw], samples[c, 1:np], initial_event[c],
                       volume[c], cl_renal[c] + cl_nonrenal[c], ka[c], f[c], a0[c]);
      if (np > 0) conc[c, 1:np] = segment(out, 1, np)';
      auc[c, 1:nw] = segment(out, np + 1, nw)';
    }

    // observations: per case and kind a multivariate Student-t of the log residuals
    {
      vector[C] r2 = rep_vector(0, C);
      for (q in 1:Q) {
        r2[level_case[q]] += square(level_log_y[q] - log(fmax(conc[level_case[q], level_sample[q]], 1e-300)));
      }
      for (c in 1:C) if (n_level[c] > 0) target += marginal_t(r2[c], n_level[c], nu[1], scale[1]);
    }
    for (b in 1:B) {
      target += student_t_lcdf(censored_log_lloq[b] | nu[1],
                               log(fmax(conc[censored_case[b], censored_sample[b]], 1e-300)), scale[1]);
    }
    {
      vector[C] r2 = rep_vector(0, C);
      for (u in 1:U) {
        int c = urine_case[u];
        r2[c] += square(urine_log_y[u] - log(fmax(cl_renal[c] * auc[c, urine_window[u]], 1e-300)));
      }
      for (c in 1:C) if (n_urine[c] > 0) target += marginal_t(r2[c], n_urine[c], nu[2], scale[2]);
    }
    {
      vector[C] r2 = rep_vector(0, C);
      for (e in 1:E) {
        int c = effluent_case[e];
        real pred = cl_ectr[c, effluent_modality[e]] * auc[c, effluent_window[e]];
        r2[c] += square(effluent_log_y[e] - log(fmax(pred, 1e-300)));
      }
      for (c in 1:C) if (n_effluent[c] > 0) target += marginal_t(r2[c], n_effluent[c], nu[3], scale[3]);
    }
  }
}
