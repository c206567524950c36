raise RuntimeError("raising_pack needs a GPU driver that is not here")
