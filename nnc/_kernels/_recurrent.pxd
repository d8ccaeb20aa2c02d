# Recurrent kernels (SimpleRNN, LSTM, GRU): forward and backward through time.
# Layouts and buffer roles are described in _recurrent.pyx: feature-major histories,
# Z (F+U, T+1, N) holds [x_s; h_{s-1}], P (G, T, N) the gates / d(pre-activations).
# Y / dY (N, Ty, U) are addressed through element strides (sn over samples, st over time) so that
# Bidirectional can hand in halves of a concatenated buffer; Ty is T (return_sequences) or 1.
# joint: dW_h follows dW_x in memory, so one GEMM writes both.  lp / lz: row strides (elements) of
# the T-slot histories (P, TC, HN, Q) and of the T+1-slot ones (Z, C); rows may be padded.
from nnc._kernels._blas cimport floating

cdef void _rnn_forward(const floating* X, const floating* W_x, const floating* W_h,
                       const floating* b, floating* Z, floating* P, floating* WhT,
                       floating* Y, Py_ssize_t y_sn, Py_ssize_t y_st, Py_ssize_t Ty,
                       Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                       Py_ssize_t lp, Py_ssize_t lz, bint reverse) noexcept nogil

cdef void _rnn_backward(const floating* Z, const floating* W_x, const floating* W_h,
                        floating* P, const floating* dY, Py_ssize_t dy_sn, Py_ssize_t dy_st,
                        Py_ssize_t Ty, floating* dW_x, floating* dW_h, floating* db, floating* dh,
                        floating* acc, floating* dXf, floating* dX, Py_ssize_t N, Py_ssize_t T,
                        Py_ssize_t F, Py_ssize_t U, Py_ssize_t lp, Py_ssize_t lz, bint joint,
                        bint reverse) noexcept nogil

cdef void _lstm_forward(const floating* X, const floating* W_x, const floating* W_h,
                        const floating* b, floating* Z, floating* P, floating* C, floating* TC,
                        floating* WhT, floating* Y, Py_ssize_t y_sn, Py_ssize_t y_st,
                        Py_ssize_t Ty, Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                        Py_ssize_t lp, Py_ssize_t lz, bint reverse) noexcept nogil

cdef void _lstm_backward(const floating* Z, const floating* W_x, const floating* W_h,
                         floating* P, const floating* C, const floating* TC,
                         const floating* dY, Py_ssize_t dy_sn, Py_ssize_t dy_st, Py_ssize_t Ty,
                         floating* dW_x, floating* dW_h, floating* db, floating* dh,
                         floating* dc, floating* acc, floating* dXf, floating* dX,
                         Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                         Py_ssize_t lp, Py_ssize_t lz, bint joint,
                         bint reverse) noexcept nogil

cdef void _gru_forward(const floating* X, const floating* W_x, const floating* W_h,
                       const floating* b_x, const floating* b_h, floating* Z, floating* P,
                       floating* HH, floating* HN, floating* WhT,
                       floating* Y, Py_ssize_t y_sn, Py_ssize_t y_st, Py_ssize_t Ty,
                       Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                       Py_ssize_t lp, Py_ssize_t lz, bint reverse) noexcept nogil

cdef void _gru_backward(const floating* Z, const floating* W_x, const floating* W_h,
                        floating* P, floating* Q, const floating* HN,
                        const floating* dY, Py_ssize_t dy_sn, Py_ssize_t dy_st, Py_ssize_t Ty,
                        floating* dW_x, floating* dW_h, floating* db_x, floating* db_h,
                        floating* dh, floating* acc, floating* dXf, floating* dX,
                        Py_ssize_t N, Py_ssize_t T, Py_ssize_t F, Py_ssize_t U,
                        Py_ssize_t lp, Py_ssize_t lz, bint reverse) noexcept nogil
