<?xml version="1.0" encoding="UTF-8"?>
<!--
  FHIR R4 (an Appointment, alone or in a Bundle with its Patient) to the clinic
  API's AppointmentNotification (schemas/soap/cergw-clinic.wsdl, ClinicCallbackPort)
  in a SOAP 1.1 or 1.2 envelope: how a change made in IKP reaches a clinic that
  speaks SOAP. The engine validates the result against the API schema.
  Parameters: $soap_version (11 or 12), $source (who made the change, e.g. IKP).
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:f="http://hl7.org/fhir" xmlns:c="urn:cergw:clinic:v1" exclude-result-prefixes="f">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:param name="soap_version" select="'11'"/>
  <xsl:param name="source" select="'IKP'"/>
  <xsl:variable name="RPWDL_PREFIX" select="'urn:oid:2.16.840.1.113883.3.4424.2.3.1.'"/>
  <xsl:variable name="OID_SPECIALTY" select="'urn:oid:2.16.840.1.113883.3.4424.11.2.4'"/>
  <xsl:variable name="a" select="(//f:Appointment)[1]"/>
  <xsl:variable name="id" select="($a/f:identifier[starts-with(f:system/@value, $RPWDL_PREFIX)])[1]"/>
  <xsl:variable name="pt-actor" select="$a/f:participant/f:actor[f:type/@value = 'Patient' or starts-with(f:reference/@value, 'Patient/')][1]"/>
  <xsl:variable name="patient" select="(//f:Patient[f:identifier[f:value/@value = $pt-actor/f:identifier/f:value/@value]])[1]"/>
  <xsl:variable name="env-ns">
    <xsl:choose>
      <xsl:when test="$soap_version = '12'">http://www.w3.org/2003/05/soap-envelope</xsl:when>
      <xsl:otherwise>http://schemas.xmlsoap.org/soap/envelope/</xsl:otherwise>
    </xsl:choose>
  </xsl:variable>

  <xsl:template match="/">
    <xsl:if test="not($a)"><xsl:message terminate="yes">no Appointment to notify</xsl:message></xsl:if>
    <xsl:if test="not($id)"><xsl:message terminate="yes">the Appointment has no identifier scoped under a clinic's RPWDL OID</xsl:message></xsl:if>
    <xsl:variable name="status" select="string($a/f:status/@value)"/>
    <xsl:element name="soap:Envelope" namespace="{$env-ns}">
      <xsl:element name="soap:Body" namespace="{$env-ns}">
        <c:AppointmentNotification>
          <c:Clinic>
            <c:Rpwdl><xsl:value-of select="substring(substring-after($id/f:system/@value, $RPWDL_PREFIX), 1, 12)"/></c:Rpwdl>
            <c:Specialty><xsl:value-of select="$a/f:specialty/f:coding[f:system/@value = $OID_SPECIALTY][1]/f:code/@value"/></c:Specialty>
          </c:Clinic>
          <c:AppointmentId><xsl:value-of select="$id/f:value/@value"/></c:AppointmentId>
          <c:Change>
            <xsl:choose>
              <xsl:when test="$status = 'cancelled'">cancelled</xsl:when>
              <xsl:when test="$status = 'noshow'">noshow</xsl:when>
              <xsl:when test="$status = 'entered-in-error'">deleted</xsl:when>
              <xsl:when test="$status = 'booked'">booked</xsl:when>
              <xsl:otherwise>updated</xsl:otherwise>
            </xsl:choose>
          </c:Change>
          <xsl:if test="$a/f:start/@value"><c:Start><xsl:value-of select="$a/f:start/@value"/></c:Start></xsl:if>
          <xsl:if test="$a/f:end/@value"><c:End><xsl:value-of select="$a/f:end/@value"/></c:End></xsl:if>
          <xsl:for-each select="$a/f:slot[1]/f:identifier/f:value"><c:SlotId><xsl:value-of select="@value"/></c:SlotId></xsl:for-each>
          <xsl:if test="$pt-actor/f:identifier[f:system/@value = 'urn:oid:2.16.840.1.113883.3.4424.1.1.616']">
            <c:Pesel><xsl:value-of select="$pt-actor/f:identifier/f:value/@value"/></c:Pesel>
          </xsl:if>
          <xsl:if test="$pt-actor/f:display/@value"><c:PatientName><xsl:value-of select="$pt-actor/f:display/@value"/></c:PatientName></xsl:if>
          <xsl:if test="$patient/f:telecom">
            <c:Contact>
              <xsl:for-each select="$patient/f:telecom[f:system/@value = 'phone'][1]"><c:Phone><xsl:value-of select="f:value/@value"/></c:Phone></xsl:for-each>
              <xsl:for-each select="$patient/f:telecom[f:system/@value = 'email'][1]"><c:Email><xsl:value-of select="f:value/@value"/></c:Email></xsl:for-each>
            </c:Contact>
          </xsl:if>
          <xsl:variable name="why" select="normalize-space(concat($a/f:cancelationReason/f:text/@value, $a/f:cancelationReason/f:coding[1]/f:display/@value))"/>
          <xsl:choose>
            <xsl:when test="$why != ''"><c:Reason><xsl:value-of select="concat($why, ' (', $source, ')')"/></c:Reason></xsl:when>
            <xsl:otherwise><c:Reason><xsl:value-of select="concat('changed in ', $source)"/></c:Reason></xsl:otherwise>
          </xsl:choose>
        </c:AppointmentNotification>
      </xsl:element>
    </xsl:element>
  </xsl:template>
</xsl:stylesheet>
