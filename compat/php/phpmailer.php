<?php
// compat/php/phpmailer.php MODE FROM TO BCC SUBJECT BODY: one message through
// PHPMailer 6 (Debian's libphp-phpmailer), MODE "sendmail" (isSendmail(): popen
// of sendmail_path plus its own flags) or "mail" (isMail(): PHP's mail() with
// -f). setFrom() also sets the envelope Sender. Prints {"result", "error"}.
require '/usr/share/php/libphp-phpmailer/autoload.php';

use PHPMailer\PHPMailer\PHPMailer;

[, $mode, $from, $to, $bcc, $subject, $body] = $argv;
$m = new PHPMailer(false);
if ($mode === 'sendmail') {
    $m->isSendmail();
} else {
    $m->isMail();
}
$m->setFrom($from, 'Compat Site');
$m->addAddress($to);
if ($bcc !== '') {
    $m->addBCC($bcc);
}
$m->Subject = $subject;
$m->Body = $body;
$ok = $m->send();
echo json_encode(["result" => $ok, "error" => $m->ErrorInfo]), "\n";
