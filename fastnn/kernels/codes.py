"""Integer codes the kernels branch on. Names become codes in one registry
(``fastnn/registry.py``); kernels see only these constants."""

# activations
IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3
LEAKY_RELU = 4
ELU = 5
SELU = 6
GELU = 7
SOFTPLUS = 8

# losses
SOFTMAX_XENT = 0
BINARY_XENT = 1
MSE = 2
HALF_MSE = 3          # 0.5 * MSE: scikit-learn's squared loss
HALF_POISSON = 4      # scikit-learn's half Poisson deviance, log link
CLIPPED = 16          # added to a cross-entropy code: its value (not its gradient)
                      # as scikit-learn's, probabilities clipped to [eps, 1 - eps]

# optimizers
SGD = 0
MOMENTUM = 1
RMSPROP = 2
ADAM = 3
ADAMW = 4
ADAM_SK = 5           # scikit-learn's Adam (bias correction folded into lr)

# layer kinds
DENSE = 0
BATCHNORM = 1
DROPOUT = 2

# columns of the integer layer table handed to the network kernels
K_KIND = 0      # DENSE / BATCHNORM / DROPOUT
K_IN = 1        # input width
K_OUT = 2       # output width
K_ACT = 3       # activation code (DENSE)
K_W = 4         # offset of W (DENSE) or gamma (BATCHNORM) in the parameter buffer
K_B = 5         # offset of b (DENSE; -1 without bias) or beta (BATCHNORM)
K_A = 6         # offset of this layer's output in the activation workspace (per row)
K_Z = 7         # offset of its pre-activation / xhat / mask workspace (per row)
K_S = 8         # offset of BatchNorm running statistics in the state buffer
K_WT = 9        # 1: W is stored transposed, (n_out, n_in) row-major (DENSE, BLAS only)
K_COLS = 10

# columns of the float layer table
F_RATE = 0      # dropout rate
F_MOMENTUM = 1  # BatchNorm momentum
F_EPS = 2       # BatchNorm epsilon
F_COLS = 3

# optimizer hyper-parameter vector
H_LR = 0
H_BETA1 = 1     # Adam beta1, SGD momentum, Momentum beta, RMSProp rho
H_BETA2 = 2
H_EPS = 3
H_NESTEROV = 4
H_DECAY = 5     # AdamW weight decay
H_COLS = 6
